import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsAuthSetup, ServiceKind } from '@relay/bus';
import { internalToken, masterKey, writeConfig } from './config.js';
import { acquireTestInfra, testContainersWanted } from './containers.js';
import { createTestClient, type TestClient } from './grpc-client.js';
import { dropBus, testNatsUrl, testRedisUrl, uniquePrefix } from './infra.js';
import { spawnService, type ServiceProcess } from './service.js';
import type { ExitStatus } from './service-process.js';
import { testCa } from './tls.js';

export interface StopResult {
  name: string;
  pid: number;
  status: ExitStatus;
  logs: string[];
}

export interface StackOptions {
  /** The relay.yaml content (the shape in DESIGN.md), written to a temporary file. */
  config: unknown;
  /** Label for the bus prefix; a unique prefix is made from it. */
  label?: string;
  /** How many smtp-sender replicas to start. Default 1. */
  smtpSenders?: number;
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Extra environment for the smtp-sender replicas only. */
  smtpSenderEnv?: Record<string, string>;
  /** The bus prefix to use (made unique from `label` otherwise). */
  prefix?: string;
  /** An auth-enabled NATS server: each service gets its own user's nkey seed, and only that. */
  nats?: { url: string; auth: NatsAuthSetup };
  /**
   * The CA `client()` trusts when RELAY_TLS_CERT turns on TLS for ingest's gRPC. Default: the
   * test CA (testkit `testCa()`), which issued the certificate the tests serve.
   */
  grpcCaPem?: string;
}

export interface Stack {
  prefix: string;
  /** host:port of ingest's gRPC server. */
  address: string;
  /** Environment every service of this stack gets. */
  env: Record<string, string>;
  credentials: ServiceProcess;
  ingest: ServiceProcess;
  scheduler: ServiceProcess;
  graphSender: ServiceProcess;
  /** Started replicas, including ones stopped or killed since. */
  smtpSenders: ServiceProcess[];
  client(apiKey?: string): TestClient;
  addSmtpSender(): Promise<ServiceProcess>;
  /**
   * SIGTERMs every service still running and drops the bus; resolves with the exit status of
   * each service this stopped (not of ones a test stopped or killed before).
   */
  stop(): Promise<StopResult[]>;
}

/**
 * Starts the five services against the local NATS and Redis (or, with RELAY_TEST_CONTAINERS=1,
 * ones in containers shared by this test process's stacks), under a bus prefix of its own.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const releaseInfra = testContainersWanted() ? await acquireTestInfra() : async () => {};
  const prefix = opts.prefix ?? uniquePrefix(opts.label ?? 'e2e');
  const env: Record<string, string> = {
    RELAY_CONFIG: writeConfig(opts.config),
    NATS_URL: opts.nats?.url ?? testNatsUrl(),
    RELAY_ENVELOPE_KEY: randomBytes(32).toString('base64'),
    REDIS_URL: testRedisUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_MASTER_KEY: masterKey(),
    RELAY_INTERNAL_TOKEN: internalToken(),
    RELAY_HOST: '127.0.0.1',
    RELAY_METRICS_PORT: '0',
    RELAY_SHUTDOWN_GRACE: '10s',
    ...opts.env,
  };
  const started: ServiceProcess[] = [];
  const clients: TestClient[] = [];
  const smtpSenders: ServiceProcess[] = [];
  const seedDir = opts.nats ? mkdtempSync(join(tmpdir(), 'relay-nats-seeds-')) : undefined;
  const seeds = opts.nats && seedDir ? seedFiles(seedDir, opts.nats.auth) : undefined;
  const removeSeeds = () => seedDir && rmSync(seedDir, { recursive: true, force: true });
  const spawn = async (name: string, extra: Record<string, string> = {}) => {
    const nats: Record<string, string> = seeds ? { NATS_NKEY_SEED_FILE: seeds[name as ServiceKind] } : {};
    const p = await spawnService(name, { env: { ...env, ...nats, ...extra } });
    started.push(p);
    return p;
  };

  try {
    // Credentials first: the others need its port, and it creates the streams the others use.
    const credentials = await spawn('credentials', { RELAY_CREDENTIALS_PORT: '0', RELAY_HTTP_PORT: '0' });
    env.RELAY_CREDENTIALS_ADDR = `127.0.0.1:${credentials.ports.grpc}`;
    const addSmtpSender = async () => {
      const p = await spawn('smtp-sender', opts.smtpSenderEnv);
      smtpSenders.push(p);
      return p;
    };
    const [ingest, scheduler, graphSender] = await Promise.all([
      // Its public HTTP port: the caller's when given (a console test needs to know it before start).
      spawn('ingest', { RELAY_GRPC_PORT: '0', RELAY_HTTP_PORT: opts.env?.RELAY_HTTP_PORT ?? '0' }),
      spawn('scheduler'),
      spawn('graph-sender'),
      ...Array.from({ length: opts.smtpSenders ?? 1 }, () => addSmtpSender()),
    ]);
    const address = `127.0.0.1:${ingest!.ports.grpc}`;
    // The pair that serves ingest's SMTP door serves its gRPC over TLS too.
    const grpcTls = env.RELAY_TLS_CERT ? { caPem: opts.grpcCaPem ?? testCa().caPem } : undefined;
    return {
      prefix,
      address,
      env,
      credentials,
      ingest: ingest!,
      scheduler: scheduler!,
      graphSender: graphSender!,
      smtpSenders,
      client(apiKey) {
        const c = createTestClient(address, apiKey, grpcTls);
        clients.push(c);
        return c;
      },
      addSmtpSender,
      async stop() {
        for (const c of clients) c.close();
        const statuses = await stopAll(started);
        removeSeeds();
        await dropBus(prefix).finally(releaseInfra);
        return statuses;
      },
    };
  } catch (err) {
    await stopAll(started);
    removeSeeds();
    await dropBus(prefix).catch(() => {});
    await releaseInfra().catch(() => {});
    throw err;
  }
}

function seedFiles(dir: string, auth: NatsAuthSetup): Record<ServiceKind, string> {
  const files = {} as Record<ServiceKind, string>;
  for (const u of auth.users) {
    if (u.kind === 'admin') continue;
    files[u.kind] = join(dir, `${u.kind}.nk`);
    writeFileSync(files[u.kind], `${u.seed}\n`, { mode: 0o600 });
  }
  return files;
}

async function stopAll(procs: ServiceProcess[]): Promise<StopResult[]> {
  const running = (await Promise.all(procs.map(async (p) => ((await settledNow(p.exited)) ? undefined : p)))).filter(
    (p): p is ServiceProcess => p !== undefined,
  );
  // Front to back: ingest stops taking calls before the services behind it go.
  const order = ['ingest', 'scheduler', 'smtp-sender', 'graph-sender', 'credentials'];
  const sorted = running.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  return Promise.all(sorted.map(async (p) => ({ name: p.name, pid: p.pid, status: await p.stop('SIGTERM', 20_000), logs: p.logs })));
}

async function settledNow(p: Promise<unknown>): Promise<boolean> {
  const pending = Symbol('pending');
  return (await Promise.race([p, Promise.resolve(pending)])) !== pending;
}

/** One line per service that did not exit with code 0, with its last log lines; empty if all did. */
export function uncleanExits(results: StopResult[]): string[] {
  return results
    .filter((r) => r.status.code !== 0 || r.status.signal !== null)
    .map((r) => `${r.name} (pid ${r.pid}) exited with ${JSON.stringify(r.status)}; last log lines:\n${r.logs.slice(-10).join('\n')}`);
}
