import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { dropBus, processesExited, procRunning, repoRoot, serviceEnv, testNatsUrl, testRedisUrl, uniquePrefix } from '@relay/testkit';
import { afterEach, describe, expect, it } from 'vitest';

const STACK_SCRIPT = join('tools', 'dist', 'stack', 'stack.js');

/**
 * A repository root of symlinks, so the stack under test keeps its demo files (`.relay/`) there
 * and not in the developer's checkout. Node keeps the symlinked path of the main module only with
 * --preserve-symlinks-main; the stack finds the services from that path.
 */
function makeRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'relay-stack-'));
  mkdirSync(join(root, 'tools'));
  for (const dir of ['node_modules', 'libs', 'services', join('tools', 'dist')]) symlinkSync(join(repoRoot, dir), join(root, dir));
  return root;
}

interface RunningStack {
  proc: ChildProcess;
  lines: string[];
  exited: Promise<void>;
  /** Resolves with the first line matching `re`; rejects if the stack exits or `timeoutMs` passes first. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>;
}

function startStack(root: string, prefix: string): RunningStack {
  const env = serviceEnv({
    NATS_URL: testNatsUrl(),
    REDIS_URL: testRedisUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_GRPC_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_CREDENTIALS_PORT: '0',
    RELAY_DEMO_SMTP_PORT: '0',
    RELAY_SHUTDOWN_GRACE: '5s',
    // Nothing to export to here; a flush to an absent collector is not what this test is about.
    OTEL_TRACES_EXPORTER: 'none',
    OTEL_METRICS_EXPORTER: 'prometheus',
  });
  const proc = spawn(process.execPath, ['--preserve-symlinks-main', join(root, STACK_SCRIPT)], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const events = new EventEmitter();
  for (const s of [proc.stdout, proc.stderr]) {
    createInterface({ input: s, crlfDelay: Infinity }).on('line', (l) => {
      lines.push(l);
      events.emit('line', l);
    });
  }
  const exited = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  const waitForLine = (re: RegExp, timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return resolve(seen);
      const done = () => {
        clearTimeout(timer);
        events.off('line', onLine);
      };
      const onLine = (l: string) => {
        if (!re.test(l)) return;
        done();
        resolve(l);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`the stack did not print ${re} within ${timeoutMs} ms:\n${lines.join('\n')}`));
      }, timeoutMs);
      events.on('line', onLine);
      void exited.then(() => {
        done();
        reject(new Error(`the stack exited without printing ${re}:\n${lines.join('\n')}`));
      });
    });
  return { proc, lines, exited, waitForLine };
}

/** `[ingest]       ready (grpc 38893, metrics 34801)` → its ports. */
function readyPorts(lines: string[]): number[] {
  return lines.flatMap((l) => {
    const m = /^\[[\w-]+\]\s+ready \(([^)]*)\)/.exec(l);
    return m ? [...m[1]!.matchAll(/\b(\d+)\b/g)].map((p) => Number(p[1])) : [];
  });
}

/** Processes whose parent is `pid`. */
function childPids(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

/** Starts the stack in demo mode and returns it with its five services' pids and ports. */
async function startedStack() {
  const root = makeRoot();
  const prefix = uniquePrefix('orphans');
  const stack = startStack(root, prefix);
  const children: number[] = [];
  cleanup.push(
    () => rmSync(root, { recursive: true, force: true }),
    () => dropBus(prefix),
    () => {
      // Whatever the outcome, nothing this test started outlives it.
      for (const pid of [stack.proc.pid!, ...children]) if (procRunning(pid)) process.kill(pid, 'SIGKILL');
    },
  );
  await stack.waitForLine(/^Campus Relay is running/, 60_000);
  children.push(...childPids(stack.proc.pid!));
  const ports = readyPorts(stack.lines);
  expect(children).toHaveLength(5);
  expect(ports.length).toBeGreaterThanOrEqual(5);
  expect(existsSync(join(root, '.relay', 'stack.json'))).toBe(true);
  return { stack, children, ports };
}

async function expectGoneAndPortsFree(children: number[], ports: number[]) {
  await processesExited(children, 30_000, 'the stack died');
  const free = await Promise.all(ports.map(async (port) => ({ port, free: await canListen(port) })));
  expect(free.filter((p) => !p.free)).toEqual([]);
}

describe('npm run stack, killed', () => {
  it('by SIGKILL: every service exits and frees its ports', { timeout: 120_000 }, async () => {
    const { stack, children, ports } = await startedStack();
    stack.proc.kill('SIGKILL');
    await stack.exited;
    await expectGoneAndPortsFree(children, ports);
  });

  it('by SIGTERM, then SIGKILL while it stops its services: every service exits and frees its ports', { timeout: 120_000 }, async () => {
    const { stack, children, ports } = await startedStack();
    stack.proc.kill('SIGTERM');
    // Killed mid-stop, as a harness or systemd does once its own timeout is over: credentials, which
    // it stops last, is still running then.
    await stack.waitForLine(/^stack: SIGTERM: stopping/, 10_000);
    stack.proc.kill('SIGKILL');
    await stack.exited;
    expect(children.filter(procRunning).length).toBeGreaterThan(0);
    await expectGoneAndPortsFree(children, ports);
  });
});
