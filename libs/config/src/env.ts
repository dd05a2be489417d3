import { readFileSync } from 'node:fs';
import { ConfigError, parseDuration, type InternalAuth, type NatsAuth } from '@relay/core';
import { readInternalAuth } from './internal-auth.js';

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
  /** Where the public ports listen (ingest's gRPC, the HTTP port): RELAY_HOST. */
  host: string;
  /**
   * Where internal ports listen (credentials' internal gRPC, every /metrics): RELAY_INTERNAL_HOST,
   * loopback unless set, so that they are reachable only where the operator opens them.
   */
  internalHost: string;
  /** Certificate and key for the public ports (RELAY_TLS_CERT, RELAY_TLS_KEY: PEM files). */
  tls: { cert: Buffer; key: Buffer } | undefined;
  /** Connections one peer address may hold on ingest's gRPC port; 0 for no limit. */
  grpcMaxConnectionsPerPeer: number;
  /** Prefix of every stream, subject, bucket and Redis key: lets several relays share a broker. */
  busPrefix: string;
  graceMs: number;
  /** Replicas of the relay's streams and buckets when this service creates them (3 in a cluster). */
  streamReplicas: number;
  /** How long a consumed message may go unacknowledged before JetStream redelivers it. */
  ackWaitMs: number;
  logLevel: string;
  /** How this service proves itself to NATS, and the TLS it expects; all empty in a development setup. */
  nats: NatsAuth;
  /** RELAY_ENVELOPE_KEY(_FILE): signs envelopes at ingest, checked by the senders. */
  envelopeKey?: Buffer;
  /** RELAY_ENVELOPE_KEY_OLD: earlier envelope keys senders still accept (comma-separated base64). */
  oldEnvelopeKeys?: Buffer[];
  /** How services authenticate on internal gRPC (see readInternalAuth); undefined when not set up. */
  internalAuth?: InternalAuth;
  /** RELAY_SMTP_PORT: ingest's SMTP submission door (STARTTLS); undefined: no listener, 0: any free port. */
  smtpPort?: number;
  /** RELAY_SMTPS_PORT: the same door with implicit TLS (465). */
  smtpsPort?: number;
  /** RELAY_CONSOLE_SESSION_KEY: signs the console's cookies; the same on every ingest replica. */
  consoleSessionKey?: Buffer;
  /** RELAY_CONSOLE_DEMO_TOKEN: the demo's one-time console sign-in (npm run stack without a config). */
  consoleDemoToken?: string;
  /**
   * RELAY_TRACE_URL_TEMPLATE: a message's trace in the tracing UI, `{trace_id}` standing for its
   * trace id (e.g. http://jaeger.campus:16686/trace/{trace_id}); the console links to it.
   */
  traceUrlTemplate?: string;
  /**
   * RELAY_TOKEN_KEEP_ALIVE: credentials refreshes a refresh_token sender's token once its last
   * refresh is older than this, so that an idle sender's refresh token does not lapse. Unset: off.
   */
  tokenKeepAliveMs?: number;
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
  internalHost: '127.0.0.1',
  grpcMaxConnectionsPerPeer: 32,
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
    internalHost: env.RELAY_INTERNAL_HOST || ENV_DEFAULTS.internalHost,
    tls: tlsFiles(env.RELAY_TLS_CERT, env.RELAY_TLS_KEY),
    grpcMaxConnectionsPerPeer: count(env, 'RELAY_GRPC_MAX_CONNECTIONS_PER_PEER', ENV_DEFAULTS.grpcMaxConnectionsPerPeer),
    busPrefix: prefix(env.RELAY_BUS_PREFIX),
    graceMs: duration(env, 'RELAY_SHUTDOWN_GRACE', ENV_DEFAULTS.graceMs),
    ackWaitMs: duration(env, 'RELAY_ACK_WAIT', ENV_DEFAULTS.ackWaitMs),
    streamReplicas: replicas(env),
    logLevel: env.LOG_LEVEL || ENV_DEFAULTS.logLevel,
    nats: natsAuth(env),
    envelopeKey: envelopeKey(env),
    oldEnvelopeKeys: keyList('RELAY_ENVELOPE_KEY_OLD', env.RELAY_ENVELOPE_KEY_OLD),
    internalAuth: readInternalAuth(env),
    smtpPort: optionalPort(env, 'RELAY_SMTP_PORT'),
    smtpsPort: optionalPort(env, 'RELAY_SMTPS_PORT'),
    consoleSessionKey: keyList('RELAY_CONSOLE_SESSION_KEY', env.RELAY_CONSOLE_SESSION_KEY)[0],
    consoleDemoToken: demoToken(env.RELAY_CONSOLE_DEMO_TOKEN),
    traceUrlTemplate: traceUrlTemplate(env.RELAY_TRACE_URL_TEMPLATE),
    tokenKeepAliveMs: tokenKeepAlive(env),
  };
}

/** Longest RELAY_TRACE_URL_TEMPLATE. */
export const TRACE_URL_TEMPLATE_MAX = 2_000;

function traceUrlTemplate(v: string | undefined): string | undefined {
  if (!v) return undefined;
  const name = 'RELAY_TRACE_URL_TEMPLATE';
  if (v.length > TRACE_URL_TEMPLATE_MAX) throw new ConfigError(`${name}: at most ${TRACE_URL_TEMPLATE_MAX} characters`);
  if (!v.includes('{trace_id}'))
    throw new ConfigError(`${name}: "${v}" must contain {trace_id} where the trace id goes, e.g. http://jaeger.campus:16686/trace/{trace_id}`);
  let url: URL;
  try {
    url = new URL(v.replaceAll('{trace_id}', '0'.repeat(32)));
  } catch {
    throw new ConfigError(`${name}: "${v}" is not a URL (expected http:// or https://, e.g. http://jaeger.campus:16686/trace/{trace_id})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${name}: "${v}" must be an http:// or https:// URL`);
  return v;
}

function demoToken(v: string | undefined): string | undefined {
  if (!v) return undefined;
  if (!/^[A-Za-z0-9_-]{32,128}$/.test(v)) throw new ConfigError('RELAY_CONSOLE_DEMO_TOKEN: must be 32-128 letters, digits, "-" or "_"');
  return v;
}

function natsAuth(env: Env): NatsAuth {
  const a: NatsAuth = {
    credsFile: env.NATS_CREDS || undefined,
    user: env.NATS_USER || undefined,
    password: env.NATS_PASSWORD || undefined,
    nkeySeedFile: env.NATS_NKEY_SEED_FILE || undefined,
    tlsCa: env.NATS_TLS_CA || undefined,
    tlsCert: env.NATS_TLS_CERT || undefined,
    tlsKey: env.NATS_TLS_KEY || undefined,
  };
  const ways = [a.credsFile, a.user, a.nkeySeedFile].filter(Boolean).length;
  if (ways > 1) throw new ConfigError('NATS_CREDS, NATS_USER and NATS_NKEY_SEED_FILE: set one of them, not several');
  if (a.user && !a.password) throw new ConfigError('NATS_PASSWORD: required with NATS_USER');
  if (!a.user && a.password) throw new ConfigError('NATS_USER: required with NATS_PASSWORD');
  if (Boolean(a.tlsCert) !== Boolean(a.tlsKey)) throw new ConfigError('NATS_TLS_CERT and NATS_TLS_KEY: set both or neither');
  return a;
}

function envelopeKey(env: Env): Buffer | undefined {
  let v = env.RELAY_ENVELOPE_KEY;
  if (!v && env.RELAY_ENVELOPE_KEY_FILE) {
    try {
      v = readFileSync(env.RELAY_ENVELOPE_KEY_FILE, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`RELAY_ENVELOPE_KEY_FILE: cannot read ${env.RELAY_ENVELOPE_KEY_FILE}: ${(err as Error).message}`);
    }
  }
  if (!v) return undefined;
  return keyList('RELAY_ENVELOPE_KEY', v)[0];
}

function keyList(name: string, v: string | undefined): Buffer[] {
  if (!v) return [];
  return v
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean)
    .map((k, i) => {
      const key = Buffer.from(k, 'base64');
      if (key.length !== 32)
        throw new ConfigError(`${name}: key ${i + 1} must be 32 bytes in base64 (got ${key.length} bytes); make one with: openssl rand -base64 32`);
      return key;
    });
}

/**
 * The envelope keys of ingest and the senders, or a ConfigError. Its own key, never derived from
 * the master key: the scheduler and the credentials service must not be able to make one.
 */
export function requireEnvelopeKeys(env: RelayEnv): { current: Buffer; previous: Buffer[] } {
  if (!env.envelopeKey)
    throw new ConfigError(
      'RELAY_ENVELOPE_KEY: required by ingest and the senders (32 bytes, base64, the same for all of them); make one with: openssl rand -base64 32',
    );
  return { current: env.envelopeKey, previous: env.oldEnvelopeKeys ?? [] };
}

function port(env: Env, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name}: "${v}" is not a port (0-65535; 0 means any free port)`);
  return n;
}

function count(env: Env, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${name}: "${v}" is not a whole number (0 means no limit)`);
  return n;
}

function tlsFiles(certPath: string | undefined, keyPath: string | undefined): RelayEnv['tls'] {
  if (!certPath && !keyPath) return undefined;
  if (!certPath || !keyPath)
    throw new ConfigError(
      `${certPath ? 'RELAY_TLS_KEY' : 'RELAY_TLS_CERT'}: required with ${certPath ? 'RELAY_TLS_CERT' : 'RELAY_TLS_KEY'} (PEM files of the public ports' certificate and key)`,
    );
  const read = (name: string, path: string, marker: RegExp) => {
    let pem: Buffer;
    try {
      pem = readFileSync(path);
    } catch (err) {
      throw new ConfigError(`${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    if (!marker.test(pem.toString('latin1')))
      throw new ConfigError(`${name}: ${path} holds no PEM ${name === 'RELAY_TLS_CERT' ? 'certificate' : 'private key'}`);
    return pem;
  };
  return { cert: read('RELAY_TLS_CERT', certPath, /-----BEGIN CERTIFICATE-----/), key: read('RELAY_TLS_KEY', keyPath, /-----BEGIN [A-Z ]*PRIVATE KEY-----/) };
}

function optionalPort(env: Env, name: string): number | undefined {
  return env[name] === undefined || env[name] === '' ? undefined : port(env, name, 0);
}

/** RELAY_TOKEN_KEEP_ALIVE bounds: not more often than hourly, and before Microsoft's 90 idle days. */
export const TOKEN_KEEP_ALIVE_BOUNDS = { minMs: 3_600_000, maxMs: 89 * 86_400_000 } as const;

function tokenKeepAlive(env: Env): number | undefined {
  if (!env.RELAY_TOKEN_KEEP_ALIVE) return undefined;
  const ms = duration(env, 'RELAY_TOKEN_KEEP_ALIVE', 0);
  if (ms < TOKEN_KEEP_ALIVE_BOUNDS.minMs || ms > TOKEN_KEEP_ALIVE_BOUNDS.maxMs) {
    throw new ConfigError(
      `RELAY_TOKEN_KEEP_ALIVE: must be between 1h and 89d (refresh tokens lapse after 90 days unused), e.g. 30d; got "${env.RELAY_TOKEN_KEEP_ALIVE}"`,
    );
  }
  return ms;
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

// RELAY_JS_REPLICAS is the contract's name; RELAY_STREAM_REPLICAS is read too, RELAY_JS_REPLICAS winning.
function replicas(env: Env): number {
  const name = env.RELAY_JS_REPLICAS ? 'RELAY_JS_REPLICAS' : 'RELAY_STREAM_REPLICAS';
  const v = env[name];
  if (!v) return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 5) throw new ConfigError(`${name}: "${v}" must be 1 to 5`);
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
  if (key.length !== 32)
    throw new ConfigError(`RELAY_MASTER_KEY: must be 32 bytes in base64 (got ${key.length} bytes); make one with: openssl rand -base64 32`);
  return key;
}

function oldMasterKeys(v: string | undefined): Buffer[] {
  return keyList('RELAY_MASTER_KEY_OLD', v);
}

/** The master key, or a ConfigError saying that this service needs one. */
export function requireMasterKey(env: RelayEnv): Buffer {
  if (!env.masterKey) throw new ConfigError('RELAY_MASTER_KEY: required (32 bytes, base64); make one with: openssl rand -base64 32');
  return env.masterKey;
}
