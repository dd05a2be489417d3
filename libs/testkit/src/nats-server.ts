import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { natsServerConfig, type NatsAuthSetup } from '@relay/bus';
import { requireBinary, runsWith } from './binaries.js';
import { freePort } from './net.js';

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN || '/usr/sbin/nats-server';
/** Suites that need nats-server run when it is installed, and always in CI (see runsWith). */
export const hasNatsServer = runsWith(NATS_SERVER_BIN);

export interface PrivateNats {
  url: string;
  port: number;
  /** SIGKILLs the server: clients see the broker vanish. */
  kill(): Promise<void>;
  /** Starts it again on the same port with the same JetStream store (nothing when it runs). */
  restart(): Promise<void>;
  /** What the server logged (permission violations among it). */
  output(): string;
  /** Kills it (if running) and removes its store. */
  close(): Promise<void>;
}

/**
 * A NATS server of the test's own, for tests that take the broker down; with `auth`, one that
 * admits only those users, with their permissions.
 */
export async function startPrivateNats(opts: { auth?: NatsAuthSetup; tls?: { certFile: string; keyFile: string } } = {}): Promise<PrivateNats> {
  requireBinary(NATS_SERVER_BIN, 'install nats-server, or set NATS_SERVER_BIN');
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), 'relay-nats-'));
  let args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir];
  if (opts.auth) {
    const conf = join(storeDir, 'nats-server.conf');
    writeFileSync(
      conf,
      natsServerConfig({ host: '127.0.0.1', port, storeDir: join(storeDir, 'js'), auth: opts.auth, ...(opts.tls ? { tls: opts.tls } : {}) }),
      { mode: 0o600 },
    );
    args = ['-c', conf];
  }
  let child: ChildProcess | undefined;
  let logged = '';

  const start = () =>
    new Promise<void>((resolve, reject) => {
      const c = spawn(NATS_SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      child = c;
      let out = '';
      const timer = setTimeout(() => {
        c.kill('SIGKILL');
        reject(new Error(`nats-server was not ready within 10 s:\n${out}`));
      }, 10_000);
      c.stderr?.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        logged += s;
        if (out.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      c.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}:\n${out}`));
      });
    });

  const kill = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  process.once('exit', () => child?.kill('SIGKILL'));

  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    kill,
    output: () => logged,
    // A second server on the same port would fail to bind while the first one, no longer
    // referenced here, ran on after the test.
    restart: async () => {
      if (child && child.exitCode === null && child.signalCode === null) return;
      await start();
    },
    async close() {
      await kill();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
