import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createNatsAuth, natsServerConfig, type NatsAuthSetup, type ServiceKind } from '@relay/bus';
import { StackError } from './errors.js';
import type { NatsLaunch } from './infra.js';

const READY_TIMEOUT_MS = 15_000;

export interface StackNats {
  auth: NatsAuthSetup;
  /** Where each service's nkey seed lives (its NATS_NKEY_SEED_FILE), and the admin's. */
  seedFiles: Record<ServiceKind | 'admin', string>;
  launch: NatsLaunch;
}

/**
 * The users of a NATS the stack starts itself: a fresh nkey per service kind (and an admin) for
 * each run, written under `.relay/nats/` readable by this user only, with the server
 * configurations for a container and for this machine's nats-server.
 */
export function prepareStackNats(stackDir: string, prefix: string): StackNats {
  const dir = join(stackDir, 'nats');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const auth = createNatsAuth(prefix);
  const seedFiles = {} as StackNats['seedFiles'];
  for (const u of auth.users) {
    seedFiles[u.kind] = join(dir, `${u.kind}.nk`);
    writeFileSync(seedFiles[u.kind], `${u.seed}\n`, { mode: 0o600 });
  }
  return {
    auth,
    seedFiles,
    launch: {
      container: {
        command: ['-c', '/etc/relay/nats-server.conf'],
        files: [{ content: natsServerConfig({ host: '0.0.0.0', port: 4222, storeDir: '/data', auth }), target: '/etc/relay/nats-server.conf' }],
      },
      startPrivate: (binary) => startPrivateNatsServer(binary, dir, auth),
    },
  };
}

/** The environment that gives service `kind` its own NATS user, and nothing of another way to log in. */
export function natsUserEnv(base: Record<string, string | undefined>, nats: StackNats | undefined, kind: ServiceKind): Record<string, string | undefined> {
  if (!nats) return {};
  return { NATS_CREDS: undefined, NATS_USER: undefined, NATS_PASSWORD: undefined, NATS_NKEY_SEED_FILE: nats.seedFiles[kind], ...tlsOf(base) };
}

function tlsOf(base: Record<string, string | undefined>) {
  return { NATS_TLS_CA: base.NATS_TLS_CA, NATS_TLS_CERT: base.NATS_TLS_CERT, NATS_TLS_KEY: base.NATS_TLS_KEY };
}

/** Starts `binary` on a free loopback port with the users, its JetStream store kept under `dir`. */
async function startPrivateNatsServer(binary: string, dir: string, auth: NatsAuthSetup): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const conf = join(dir, 'nats-server.conf');
  writeFileSync(conf, natsServerConfig({ host: '127.0.0.1', port, storeDir: join(dir, 'store'), auth }), { mode: 0o600 });
  const child = spawn(binary, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new StackError(`${binary} was not ready within ${READY_TIMEOUT_MS / 1000} s:\n${out.slice(-2_000)}`));
    }, READY_TIMEOUT_MS);
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      if (out.length < 64_000) out += s;
      if (out.includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new StackError(`${binary} exited with ${code}:\n${out.slice(-2_000)}`));
    });
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      process.off('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * The envelope key of ingest and the senders: RELAY_ENVELOPE_KEY(_FILE) when given, else one made
 * once and kept in `.relay/` (mail queued by one run is still accepted by the next).
 */
export function stackEnvelopeKey(stackDir: string, env: Record<string, string | undefined>): string {
  if (env.RELAY_ENVELOPE_KEY) return env.RELAY_ENVELOPE_KEY;
  const file = env.RELAY_ENVELOPE_KEY_FILE || join(stackDir, 'envelope-key');
  try {
    const key = readFileSync(file, 'utf8').trim();
    if (Buffer.from(key, 'base64').length === 32) return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || env.RELAY_ENVELOPE_KEY_FILE) throw err;
  }
  const key = randomBytes(32).toString('base64');
  mkdirSync(stackDir, { recursive: true });
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

/** The services that sign (ingest) or check (the senders) envelopes: the only ones given the key. */
export const ENVELOPE_KEY_HOLDERS: readonly ServiceKind[] = ['ingest', 'smtp-sender', 'graph-sender'];
