import { loadConfigFile, readEnv, type RelayConfig, type RelayEnv, type SecretResolution } from '@relay/config';
import { ConfigError, runService, type RunnableService } from '@relay/core';
import { createLogger, shutdownTelemetry, TELEMETRY_DEFAULTS, type Logger } from '@relay/telemetry';

/** What a service's factory is built from: the environment, relay.yaml and a logger. */
export interface ServiceContext {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  /** Where relay.yaml was read from (RELAY_CONFIG), for a service that re-reads it. */
  configPath: string;
  resolveSecrets: SecretResolution;
}

export interface MainOptions {
  /** Which secrets of relay.yaml this service resolves; default none (only credentials reads the senders'). */
  resolveSecrets?: SecretResolution;
}

/**
 * A service's whole main.ts: reads the environment and relay.yaml, builds the service with
 * `create` and runs it until SIGTERM or SIGINT (runService), flushing telemetry at the end.
 */
export function runMain(name: string, create: (ctx: ServiceContext) => Promise<RunnableService>, opts: MainOptions = {}): Promise<void> {
  const resolveSecrets = opts.resolveSecrets ?? 'none';
  return runService(
    process,
    name,
    async () => {
      const env = readEnv(process.env);
      if (!env.configPath) throw new ConfigError('RELAY_CONFIG: required (path of relay.yaml)');
      const config = loadConfigFile(env.configPath, process.env, { resolveSecrets });
      const logger = createLogger({ service: name, level: env.logLevel });
      const service = await create({ env, config, logger, configPath: env.configPath, resolveSecrets });
      return { service, logger, graceMs: env.graceMs };
    },
    { flush: shutdownTelemetry, flushMs: TELEMETRY_DEFAULTS.shutdownFlushMs },
  );
}
