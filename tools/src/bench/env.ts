import { randomBytes } from 'node:crypto';

type Env = Record<string, string | undefined>;

/**
 * The environment every benchmark starts its services with: the caller's own, fresh keys for the
 * run (master key, envelope key, internal token: every service that needs one gets it), loopback
 * and any free port. Each benchmark adds what is its own (Redis, TLS) on top.
 */
export function benchServiceEnv(env: Env, o: { natsUrl: string; configPath: string; prefix: string }): Env {
  return {
    ...env,
    NATS_URL: o.natsUrl,
    RELAY_CONFIG: o.configPath,
    RELAY_BUS_PREFIX: o.prefix,
    RELAY_MASTER_KEY: randomBytes(32).toString('base64'),
    RELAY_ENVELOPE_KEY: randomBytes(32).toString('base64'),
    RELAY_INTERNAL_TOKEN: randomBytes(32).toString('base64url'),
    RELAY_HOST: '127.0.0.1',
    RELAY_METRICS_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_CREDENTIALS_PORT: '0',
    RELAY_GRPC_PORT: '0',
    LOG_LEVEL: 'info',
  };
}
