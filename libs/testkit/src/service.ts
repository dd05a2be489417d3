import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { SERVICE_NODE_FLAGS } from '@relay/core';
import { repoRoot, serviceScript } from './paths.js';
import { Changes } from './wait.js';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnServiceOptions {
  /** Merged over the filtered parent environment; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** Default `<repo>/services/<name>/dist/main.js`. */
  script?: string;
  /**
   * Node flags before the script (after the services' own flags, SERVICE_NODE_FLAGS, and the telemetry
   * module's `--import`, when that is loaded).
   */
  nodeArgs?: string[];
  /**
   * Load the telemetry module first (`node --import`), as operators start a service. Default: true
   * for a service's own main.js, false for another `script`.
   */
  telemetry?: boolean;
  /** How long to wait for the "ready" log line. Default 20 s. */
  readyTimeoutMs?: number;
  /** Default: the repository root. */
  cwd?: string;
}

export interface ServiceProcess {
  name: string;
  pid: number;
  /** From the "ready" line, e.g. `{ grpc: 50051, metrics: 40001 }`. */
  ports: Record<string, number>;
  /** Every stdout and stderr line so far, kept up to date. */
  logs: string[];
  /** Resolves with the first line (from `fromLine` on) matching `re`; rejects on timeout or exit. */
  waitForLog(re: RegExp, timeoutMs?: number, fromLine?: number): Promise<string>;
  exited: Promise<ExitStatus>;
  /** Sends `signal`, waits for the exit and SIGKILLs after `timeoutMs`. Safe after an exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitStatus>;
  kill(): Promise<ExitStatus>;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

// The test runner's own settings must not leak into a service: a service should see what an
// operator's shell would give it plus what the test passes.
const INHERITED_NOT = /^(RELAY_|OTEL_|VITEST|npm_|NODE_OPTIONS$|NODE_ENV$|TEST$)/;

export function serviceEnv(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !INHERITED_NOT.test(k)) out[k] = v;
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

// A failed test must not leave services running after the test process is gone.
const live = new Set<ChildProcess>();
let reaperRegistered = false;
function track(child: ChildProcess): void {
  if (!reaperRegistered) {
    reaperRegistered = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** The telemetry module every service is started with, as operators start it (`node --import`). */
export const TELEMETRY_REGISTER = join(repoRoot, 'libs', 'telemetry', 'dist', 'register.js');

function start(name: string, opts: SpawnServiceOptions): ChildProcess {
  const script = opts.script ?? serviceScript(name);
  if (!existsSync(script)) throw new Error(`${name}: ${script} does not exist; build it first (npm run build)`);
  const telemetry = (opts.telemetry ?? opts.script === undefined) ? ['--import', pathToFileURL(TELEMETRY_REGISTER).href] : [];
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, ...telemetry, ...(opts.nodeArgs ?? []), script], {
    cwd: opts.cwd ?? repoRoot,
    env: serviceEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  return child;
}

function exitOf(child: ChildProcess): Promise<ExitStatus> {
  return new Promise((resolve) => {
    // 'close' rather than 'exit': by then every log line has been read.
    child.once('close', (code, signal) => resolve({ code, signal }));
    child.once('error', () => {
      if (child.pid === undefined) resolve({ code: null, signal: null });
    });
  });
}

function readyPorts(line: string): Record<string, number> | undefined {
  if (!line.includes('"ready"')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as { msg?: unknown }).msg !== 'ready') return undefined;
  const ports: Record<string, number> = {};
  const raw = (parsed as { ports?: unknown }).ports;
  if (typeof raw === 'object' && raw !== null) {
    for (const [k, v] of Object.entries(raw)) if (typeof v === 'number') ports[k] = v;
  }
  return ports;
}

/** Starts a built service and resolves once it logs `"msg":"ready"`. */
export async function spawnService(name: string, opts: SpawnServiceOptions = {}): Promise<ServiceProcess> {
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  const child = start(name, opts);
  const logs: string[] = [];
  const changes = new Changes();
  let ports: Record<string, number> | undefined;
  let status: ExitStatus | undefined;
  const tail = () => logs.slice(-30).join('\n');

  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      logs.push(line);
      ports ??= readyPorts(line);
      changes.notify();
    });
  }
  child.once('error', (err) => {
    logs.push(`spawn error: ${err.message}`);
    changes.notify();
  });
  const exited = exitOf(child).then((s) => {
    status = s;
    changes.notify();
    return s;
  });
  const describeExit = (s: ExitStatus) => (s.signal ? `signal ${s.signal}` : `code ${s.code}`);

  const ready = await changes
    .until(
      () => {
        if (ports) return ports;
        if (status) throw new Error(`${name} exited (${describeExit(status)}) before it was ready; last log lines:\n${tail()}`);
        return undefined;
      },
      readyTimeoutMs,
      () => new Error(`${name} was not ready within ${readyTimeoutMs} ms; last log lines:\n${tail()}`),
    )
    .catch(async (err: unknown) => {
      child.kill('SIGKILL');
      await exited;
      throw err;
    });

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<ExitStatus> => {
    if (status) return status;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    name,
    pid: child.pid ?? 0,
    ports: ready,
    logs,
    exited,
    waitForLog(re, timeoutMs = 10_000, fromLine = 0) {
      return changes.until(
        () => {
          const hit = logs.slice(fromLine).find((l) => re.test(l));
          if (hit !== undefined) return hit;
          if (status) throw new Error(`${name} exited (${describeExit(status)}) without logging ${re}; last log lines:\n${tail()}`);
          return undefined;
        },
        timeoutMs,
        () => new Error(`${name} did not log ${re} within ${timeoutMs} ms; last log lines:\n${tail()}`),
      );
    },
    stop,
    kill: () => stop('SIGKILL'),
  };
}

/** Runs a service that is expected to exit by itself (e.g. on a bad configuration). */
export async function runService(
  name: string,
  env: Record<string, string | undefined> = {},
  timeoutMs = 20_000,
  opts: Omit<SpawnServiceOptions, 'env' | 'readyTimeoutMs'> = {},
): Promise<RunResult> {
  const child = start(name, { ...opts, env });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const { code } = await exitOf(child).finally(() => clearTimeout(timer));
  if (timedOut) throw new Error(`${name} did not exit within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  return { code, stdout, stderr };
}
