/**
 * Starting a service process, the one way the tests (spawnService) and `npm run stack` (its
 * supervisor) both use: the services' Node flags and telemetry module, every output line, the
 * ready line's ports, the exit, and a stop that SIGKILLs after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { SERVICE_NODE_FLAGS } from '@relay/core';
import { Changes } from './wait.js';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** `<root>/services/<name>/dist/main.js`. */
export function serviceMain(root: string, name: string): string {
  return join(root, 'services', name, 'dist', 'main.js');
}

/** The telemetry module every service is started with (`node --import`), before its main.js. */
export function telemetryRegister(root: string): string {
  return join(root, 'libs', 'telemetry', 'dist', 'register.js');
}

export interface NodeArgsOptions {
  /** Flags after the services' own (a later value of the same flag wins). */
  extra?: readonly string[];
  /** Load the telemetry module first, as operators start a service. Default true. */
  telemetry?: boolean;
}

/**
 * Node's arguments for a script: the services' flags (SERVICE_NODE_FLAGS), then `extra`, then the
 * telemetry module, so its instrumentation sees every import, then the script.
 */
export function nodeArgsFor(root: string, script: string, opts: NodeArgsOptions = {}): string[] {
  const telemetry = (opts.telemetry ?? true) ? ['--import', pathToFileURL(telemetryRegister(root)).href] : [];
  return [...SERVICE_NODE_FLAGS, ...(opts.extra ?? []), ...telemetry, script];
}

/** Node's arguments for a built service: nodeArgsFor its main.js. */
export function serviceArgs(root: string, name: string, extra: readonly string[] = []): string[] {
  return nodeArgsFor(root, serviceMain(root, name), { extra });
}

/** The ports a service reported in its `"msg":"ready"` line, or undefined when the line is not one. */
export function readyPorts(line: string): Record<string, number> | undefined {
  if (!line.startsWith('{') || !line.includes('"ready"')) return undefined;
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

export function describeExit(s: ExitStatus): string {
  return s.signal ? `was killed by ${s.signal}` : `exited with code ${String(s.code)}`;
}

export interface ProcessSpec {
  name: string;
  command: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  cwd?: string | undefined;
  /** `pipe`: a stdin nothing is written to, which closes when this process dies. Default `ignore`. */
  stdin?: 'ignore' | 'pipe';
  /** A process group of its own (a terminal's Ctrl-C then reaches only this process). */
  detached?: boolean;
  /**
   * SIGKILL it when this process exits (a failed test must not leave services behind). Default
   * true; a supervisor whose children stop by themselves when it dies turns it off.
   */
  killOnExit?: boolean;
}

export interface ServiceChild {
  name: string;
  /** Undefined when the command could not be started. */
  pid: number | undefined;
  /** Resolves once the process is gone and its last output line was read. */
  exited: Promise<ExitStatus>;
  /** The exit status once known. */
  status(): ExitStatus | undefined;
  /** Why it could not be started (e.g. ENOENT), if that is what happened. */
  spawnError(): Error | undefined;
  /**
   * Resolves with the first defined value of `check`, asked again after every output line and on
   * exit; rejects with `onTimeout()` after `timeoutMs`, or with what `check` throws.
   */
  until<T>(check: () => T | undefined, timeoutMs: number, onTimeout: () => Error): Promise<T>;
  /** The ports of the ready line; rejects when the process exits first or after `timeoutMs`. */
  ready(timeoutMs: number): Promise<Record<string, number>>;
  /** Sends `signal`, waits for the exit and SIGKILLs after `graceMs`. Safe after the exit. */
  stop(signal: NodeJS.Signals, graceMs: number): Promise<ExitStatus>;
  kill(): void;
}

/** Starts a process and hands every stdout and stderr line to `onLine` as it comes. */
export function startProcess(spec: ProcessSpec, onLine: (line: string, stream: 'stdout' | 'stderr') => void): ServiceChild {
  const proc: ChildProcess = spawn(spec.command, [...spec.args], {
    cwd: spec.cwd,
    env: spec.env,
    stdio: [spec.stdin ?? 'ignore', 'pipe', 'pipe'],
    detached: spec.detached ?? false,
  });
  if (spec.killOnExit ?? true) track(proc);
  const changes = new Changes();
  let status: ExitStatus | undefined;
  let spawnError: Error | undefined;
  let ports: Record<string, number> | undefined;

  for (const [which, stream] of [
    ['stdout', proc.stdout],
    ['stderr', proc.stderr],
  ] as const) {
    if (!stream) continue;
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      ports ??= readyPorts(line);
      onLine(line, which);
      changes.notify();
    });
  }
  const exited = new Promise<ExitStatus>((resolve) => {
    const done = (s: ExitStatus) => {
      status ??= s;
      changes.notify();
      resolve(status);
    };
    proc.on('error', (err) => {
      // A failed kill() of a running process: 'close' still comes.
      if (proc.pid !== undefined) return;
      spawnError = err;
      done({ code: null, signal: null });
    });
    // 'close' rather than 'exit': by then every output line has been read.
    proc.once('close', (code: number | null, signal: NodeJS.Signals | null) => done({ code, signal }));
  });

  const until = <T>(check: () => T | undefined, timeoutMs: number, onTimeout: () => Error) => changes.until(check, timeoutMs, onTimeout);
  return {
    name: spec.name,
    pid: proc.pid,
    exited,
    status: () => status,
    spawnError: () => spawnError,
    until,
    ready: (timeoutMs) =>
      until(
        () => {
          if (ports) return ports;
          if (spawnError) throw new Error(`${spec.name}: cannot start ${spec.command}: ${spawnError.message}`);
          if (status) throw new Error(`${spec.name} ${describeExit(status)} before it was ready`);
          return undefined;
        },
        timeoutMs,
        () => new Error(`${spec.name} was not ready within ${timeoutMs} ms`),
      ),
    async stop(signal, graceMs) {
      if (status) return status;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    kill() {
      if (!status) proc.kill('SIGKILL');
    },
  };
}

// A failed test or a crashed tool must not leave services running after this process is gone.
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
  child.once('close', () => live.delete(child));
}
