// Telemetry first: started with `node --import @relay/telemetry/register` (as every launcher
// does) it is loaded already; run as `node dist/main.js` it is loaded here. Everything else is
// imported afterwards, so that the instrumentation sees grpc-js, http and fetch being loaded.
await import('@relay/telemetry/register');
const { loadConfigFile, readEnv } = await import('@relay/config');
const { ConfigError } = await import('@relay/core');
const { createLogger, runService } = await import('@relay/telemetry');
const { createGraphSender } = await import('./graph-sender.js');

await runService(process, 'relay-graph-sender', async () => {
  const env = readEnv(process.env);
  if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
  // Only credentials reads secrets: this service starts without them.
  const config = loadConfigFile(env.configPath, process.env, { resolveSecrets: 'none' });
  const logger = createLogger({ service: 'relay-graph-sender', level: env.logLevel });
  return { service: await createGraphSender({ env, config, logger }), logger, graceMs: env.graceMs };
});
