import { loadConfigFile, readEnv } from '@relay/config';
import { ConfigError } from '@relay/core';
import { createLogger, runService } from '@relay/telemetry';
import { createIngest } from './ingest.js';

await runService(process, 'relay-ingest', async () => {
  const env = readEnv(process.env);
  if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
  const config = loadConfigFile(env.configPath, process.env);
  const logger = createLogger({ service: 'relay-ingest', level: env.logLevel });
  return { service: await createIngest({ env, config, logger }), logger };
});
