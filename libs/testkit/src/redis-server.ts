import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { requireBinary, runsWith } from './binaries.js';
import { freePort } from './net.js';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN || '/usr/bin/redis-server';
/** Suites that need redis-server run when it is installed, and always in CI (see runsWith). */
export const hasRedisServer = runsWith(REDIS_SERVER_BIN);

export interface PrivateRedis {
  url: string;
  /** SIGKILLs it: everything it held is gone (it keeps nothing on disk). */
  kill(): Promise<void>;
  /** Starts an empty one on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** A Redis of the test's own, so a test can take it away and bring it back empty. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  requireBinary(REDIS_SERVER_BIN, 'install redis-server, or set REDIS_SERVER_BIN');
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(REDIS_SERVER_BIN, ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      if (await answers(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on port ${port} did not start`);
  };
  const kill = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, kill, restart: start, close: kill };
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
