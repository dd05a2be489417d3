import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { readEnv } from '@relay/config';
import { SERVICE_NAMES, type ServiceName } from '@relay/core';
import { serviceMain } from '@relay/testkit/service-process';
import { StackError } from './errors.js';

// Node's arguments for a service: the same for the stack, the benchmarks and the tests
// (@relay/testkit/service-process alone: the stack does not load the rest of the testkit).
export { serviceArgs } from '@relay/testkit/service-process';

type Env = Record<string, string | undefined>;

/** Services whose build is missing, so the stack can say "npm run build" instead of a stack trace. */
export function unbuiltServices(root: string): ServiceName[] {
  return SERVICE_NAMES.filter((name) => !existsSync(serviceMain(root, name)));
}

/** The fixed ports the stack binds, from the environment or the defaults (0 = any free port). */
export interface StackPorts {
  grpc: number;
  http: number;
  credentials: number;
}

/** Reads the ports with the services' own parser, so a bad value fails here with the same message. */
export function stackPorts(env: Env): StackPorts {
  const e = readEnv(env);
  return { grpc: e.grpcPort, http: e.httpPort, credentials: e.credentialsPort };
}

/** RELAY_SHUTDOWN_GRACE as the services read it: how long each gets to finish its work on a stop. */
export function shutdownGraceMs(env: Env): number {
  return readEnv(env).graceMs;
}

export interface StackSettings {
  natsUrl: string;
  redisUrl: string;
  configPath: string;
  masterKey: string | undefined;
  ports: StackPorts;
  /** Where the other services reach credentials (known once credentials is ready when its port is 0). */
  credentialsAddr: string;
  /** RELAY_HOST for every service when the caller did not set one. */
  host: string | undefined;
  /** RELAY_INTERNAL_TOKEN when the caller set up no internal authentication (a random one per run). */
  internalToken?: string | undefined;
  /** Ingest serves its public HTTP port over TLS (RELAY_TLS_CERT, or the demo's pair): the public URL is https. */
  publicTls?: boolean;
}

/**
 * The environment every service starts with: the caller's own (OTEL_*, LOG_LEVEL, RELAY_BUS_PREFIX
 * pass through) with the stack's choices on top. Each service binds only its own ports, and
 * metrics on any free port so five services never collide.
 */
export function stackServiceEnv(base: Env, s: StackSettings): Env {
  const env: Env = {
    ...base,
    NATS_URL: s.natsUrl,
    REDIS_URL: s.redisUrl,
    RELAY_CONFIG: s.configPath,
    RELAY_GRPC_PORT: String(s.ports.grpc),
    RELAY_HTTP_PORT: String(s.ports.http),
    RELAY_CREDENTIALS_PORT: String(s.ports.credentials),
    RELAY_CREDENTIALS_ADDR: s.credentialsAddr,
    RELAY_METRICS_PORT: '0',
  };
  if (s.masterKey) env.RELAY_MASTER_KEY = s.masterKey;
  if (s.internalToken) env.RELAY_INTERNAL_TOKEN = s.internalToken;
  if (!base.RELAY_HOST && s.host) env.RELAY_HOST = s.host;
  // The OAuth redirect and the console's links must name ingest's HTTP port as the browser reaches it.
  if (!base.RELAY_PUBLIC_URL && s.ports.http !== 0) env.RELAY_PUBLIC_URL = `${s.publicTls ? 'https' : 'http'}://localhost:${s.ports.http}`;
  return env;
}

/**
 * host:port for the other services to reach credentials, from its ready line when its port was 0.
 * `host`: `localhost` with internal TLS, whose certificates name no IP address.
 */
export function credentialsAddress(configured: number, readyPorts: Record<string, number>, host = '127.0.0.1'): string {
  const port = configured !== 0 ? configured : readyPorts.grpc;
  if (!port)
    throw new StackError('credentials: RELAY_CREDENTIALS_PORT=0, but its ready line reported no ports.grpc; set RELAY_CREDENTIALS_PORT to a fixed port');
  return `${host}:${port}`;
}

/** Fixed ports already taken, each with the variable that moves it, checked before anything starts. */
export async function busyPorts(ports: StackPorts, isFree: (port: number) => Promise<boolean> = portFree): Promise<string[]> {
  const wanted: Array<[number, string, string]> = [
    [ports.grpc, 'RELAY_GRPC_PORT', 'ingest gRPC'],
    [ports.http, 'RELAY_HTTP_PORT', 'ingest HTTP'],
    [ports.credentials, 'RELAY_CREDENTIALS_PORT', 'credentials gRPC'],
  ];
  const busy: string[] = [];
  const seen = new Map<number, string>();
  for (const [port, envVar, what] of wanted) {
    if (port === 0) continue;
    const other = seen.get(port);
    if (other) busy.push(`${envVar}=${port} (${what}) is the same port as ${other}`);
    else if (!(await isFree(port))) busy.push(`port ${port} (${what}) is in use: stop what holds it, or set ${envVar} to another port (0 = any free port)`);
    seen.set(port, envVar);
  }
  return busy;
}

/** Whether a port can be bound on every interface, as the services bind it. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
