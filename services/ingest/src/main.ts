// Telemetry first: started with `node --import @relay/telemetry/register` (as every launcher
// does) it is loaded already; run as `node dist/main.js` it is loaded here. Everything else is
// imported afterwards, so that the instrumentation sees grpc-js, http and fetch being loaded.
await import('@relay/telemetry/register');
const { loadConfigFile, readEnv } = await import('@relay/config');
const { ConfigError } = await import('@relay/core');
const { createLogger, runService } = await import('@relay/telemetry');
const { createIngest } = await import('./ingest.js');

await runService(process, 'relay-ingest', async () => {
  const env = readEnv(process.env);
  if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
  // Only credentials reads secrets: ingest resolves just the callers' API keys it checks.
  const config = loadConfigFile(env.configPath, process.env, { resolveSecrets: 'callers-only' });
  const logger = createLogger({ service: 'relay-ingest', level: env.logLevel });
  return { service: await createIngest({ env, config, logger }), logger, graceMs: env.graceMs };
});
