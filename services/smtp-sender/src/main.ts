import { loadConfigFile, readEnv } from '@relay/config';
import { ConfigError } from '@relay/core';
import { createLogger, runService } from '@relay/telemetry';
import { createSmtpSender } from './smtp-sender.js';

await runService(process, 'relay-smtp-sender', async () => {
  const env = readEnv(process.env);
  if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
  const config = loadConfigFile(env.configPath, process.env);
  const logger = createLogger({ service: 'relay-smtp-sender', level: env.logLevel });
  return { service: await createSmtpSender({ env, config, logger }), logger };
});
