// Telemetry first: started with `node --import @relay/telemetry/register` (as every launcher
// does) it is loaded already; run as `node dist/main.js` it is loaded here. Everything else is
// imported afterwards, so that the instrumentation sees grpc-js, http and fetch being loaded.
await import('@relay/telemetry/register');
const { runMain } = await import('@relay/service');
const { createScheduler } = await import('./scheduler.js');

// Only credentials reads secrets: this service starts without them.
await runMain('relay-scheduler', createScheduler);
