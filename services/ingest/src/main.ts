// Telemetry first: started with `node --import @relay/telemetry/register` (as every launcher
// does) it is loaded already; run as `node dist/main.js` it is loaded here. Everything else is
// imported afterwards, so that the instrumentation sees grpc-js, http and fetch being loaded.
await import('@relay/telemetry/register');
const { runMain } = await import('@relay/service');
const { createIngest } = await import('./ingest.js');

// Only credentials reads secrets: ingest resolves just the callers' API keys it checks.
await runMain('relay-ingest', createIngest, { resolveSecrets: 'callers-only' });
