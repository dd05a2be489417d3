import { loadConfigFile, readEnv } from '@relay/config';
import { ConfigError } from '@relay/core';
import { createLogger, runService } from '@relay/telemetry';
import { createCredentials } from './credentials.js';

await runService(process, 'relay-credentials', async () => {
  const env = readEnv(process.env);
  if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
  const config = loadConfigFile(env.configPath, process.env);
  const logger = createLogger({ service: 'relay-credentials', level: env.logLevel });
  return { service: await createCredentials({ env, config, logger }), logger };
});
