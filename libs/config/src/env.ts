import { ConfigError, parseDuration } from '@relay/core';

type Env = Record<string, string | undefined>;

/** Everything a service takes from its environment, validated. Only main.ts passes process.env in. */
export interface RelayEnv {
  configPath: string | undefined;
  natsUrl: string;
  redisUrl: string;
  masterKey: Buffer | undefined;
  /** RELAY_MASTER_KEY_OLD: earlier master keys (comma-separated base64) that may still open stored secrets. */
  oldMasterKeys?: Buffer[];
  grpcPort: number;
  httpPort: number;
  publicUrl: string;
  metricsPort: number;
  credentialsPort: number;
  credentialsAddr: string;
  host: string;
  /** Prefix of every stream, subject, bucket and Redis key: lets several relays share a broker. */
  busPrefix: string;
  graceMs: number;
  /** Replicas of the relay's streams and buckets when this service creates them (3 in a cluster). */
  streamReplicas: number;
  /** How long a consumed message may go unacknowledged before JetStream redelivers it. */
  ackWaitMs: number;
  logLevel: string;
  /** RELAY_SMTP_PORT: ingest's SMTP submission door (STARTTLS); undefined: no listener, 0: any free port. */
  smtpPort?: number;
  /** RELAY_SMTPS_PORT: the same door with implicit TLS (465). */
  smtpsPort?: number;
  /** RELAY_TLS_CERT / RELAY_TLS_KEY: paths of the PEM certificate chain and key ingest serves TLS with. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
}

export const ENV_DEFAULTS = {
  natsUrl: 'nats://127.0.0.1:4222',
  redisUrl: 'redis://127.0.0.1:6379',
  grpcPort: 50051,
  httpPort: 8080,
  publicUrl: 'http://localhost:8080',
  metricsPort: 0,
  credentialsPort: 50052,
  credentialsAddr: '127.0.0.1:50052',
  host: '0.0.0.0',
  busPrefix: 'relay',
  graceMs: 25_000,
  ackWaitMs: 60_000,
  logLevel: 'info',
} as const;

export function readEnv(env: Env): RelayEnv {
  return {
    configPath: env.RELAY_CONFIG || undefined,
    natsUrl: env.NATS_URL || ENV_DEFAULTS.natsUrl,
    redisUrl: env.REDIS_URL || ENV_DEFAULTS.redisUrl,
    masterKey: masterKey(env.RELAY_MASTER_KEY),
    oldMasterKeys: oldMasterKeys(env.RELAY_MASTER_KEY_OLD),
    grpcPort: port(env, 'RELAY_GRPC_PORT', ENV_DEFAULTS.grpcPort),
    httpPort: port(env, 'RELAY_HTTP_PORT', ENV_DEFAULTS.httpPort),
    publicUrl: (env.RELAY_PUBLIC_URL || ENV_DEFAULTS.publicUrl).replace(/\/+$/, ''),
    metricsPort: port(env, 'RELAY_METRICS_PORT', ENV_DEFAULTS.metricsPort),
    credentialsPort: port(env, 'RELAY_CREDENTIALS_PORT', ENV_DEFAULTS.credentialsPort),
    credentialsAddr: env.RELAY_CREDENTIALS_ADDR || ENV_DEFAULTS.credentialsAddr,
    host: env.RELAY_HOST || ENV_DEFAULTS.host,
    busPrefix: prefix(env.RELAY_BUS_PREFIX),
    graceMs: duration(env, 'RELAY_SHUTDOWN_GRACE', ENV_DEFAULTS.graceMs),
    ackWaitMs: duration(env, 'RELAY_ACK_WAIT', ENV_DEFAULTS.ackWaitMs),
    streamReplicas: replicas(env.RELAY_STREAM_REPLICAS),
    logLevel: env.LOG_LEVEL || ENV_DEFAULTS.logLevel,
    smtpPort: optionalPort(env, 'RELAY_SMTP_PORT'),
    smtpsPort: optionalPort(env, 'RELAY_SMTPS_PORT'),
    tlsCertFile: env.RELAY_TLS_CERT || undefined,
    tlsKeyFile: env.RELAY_TLS_KEY || undefined,
  };
}

function port(env: Env, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name}: "${v}" is not a port (0-65535; 0 means any free port)`);
  return n;
}

function optionalPort(env: Env, name: string): number | undefined {
  return env[name] === undefined || env[name] === '' ? undefined : port(env, name, 0);
}

function duration(env: Env, name: string, fallback: number): number {
  const v = env[name];
  if (!v) return fallback;
  try {
    return parseDuration(v);
  } catch (err) {
    throw new ConfigError(`${name}: ${(err as Error).message}`);
  }
}

function replicas(v: string | undefined): number {
  if (!v) return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 5) throw new ConfigError(`RELAY_STREAM_REPLICAS: "${v}" must be 1 to 5`);
  return n;
}

function prefix(v: string | undefined): string {
  if (!v) return ENV_DEFAULTS.busPrefix;
  if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(v)) throw new ConfigError(`RELAY_BUS_PREFIX: "${v}" must be 1-32 lowercase letters, digits, "-" or "_"`);
  return v;
}

function masterKey(v: string | undefined): Buffer | undefined {
  if (!v) return undefined;
  const key = Buffer.from(v, 'base64');
  if (key.length !== 32) throw new ConfigError(`RELAY_MASTER_KEY: must be 32 bytes in base64 (got ${key.length} bytes); make one with: openssl rand -base64 32`);
  return key;
}

function oldMasterKeys(v: string | undefined): Buffer[] {
  if (!v) return [];
  return v
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean)
    .map((k, i) => {
      const key = Buffer.from(k, 'base64');
      if (key.length !== 32) throw new ConfigError(`RELAY_MASTER_KEY_OLD: key ${i + 1} must be 32 bytes in base64 (got ${key.length} bytes)`);
      return key;
    });
}

/** The master key, or a ConfigError saying that this service needs one. */
export function requireMasterKey(env: RelayEnv): Buffer {
  if (!env.masterKey) throw new ConfigError('RELAY_MASTER_KEY: required (32 bytes, base64); make one with: openssl rand -base64 32');
  return env.masterKey;
}
