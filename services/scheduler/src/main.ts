import { loadConfigFile, readEnv } from '@relay/config';
import { ConfigError } from '@relay/core';
import { createLogger, runService } from '@relay/telemetry';
import { createScheduler } from './scheduler.js';

await runService(process, 'relay-scheduler', async () => {
  const env = readEnv(process.env);
  if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
  const config = loadConfigFile(env.configPath, process.env);
  const logger = createLogger({ service: 'relay-scheduler', level: env.logLevel });
  return { service: await createScheduler({ env, config, logger, configPath: env.configPath, secretsEnv: process.env }), logger };
});
