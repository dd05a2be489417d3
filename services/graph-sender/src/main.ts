import { loadConfigFile, readEnv } from '@relay/config';
import { ConfigError } from '@relay/core';
import { createLogger, runService } from '@relay/telemetry';
import { createGraphSender } from './graph-sender.js';

await runService(process, 'relay-graph-sender', async () => {
  const env = readEnv(process.env);
  if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
  const config = loadConfigFile(env.configPath, process.env);
  const logger = createLogger({ service: 'relay-graph-sender', level: env.logLevel });
  return { service: await createGraphSender({ env, config, logger }), logger };
});
