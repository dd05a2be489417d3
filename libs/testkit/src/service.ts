import { existsSync } from 'node:fs';
import { repoRoot, serviceScript } from './paths.js';
import { describeExit, nodeArgsFor, startProcess, type ExitStatus, type ServiceChild } from './service-process.js';

export type { ExitStatus };

export interface SpawnServiceOptions {
  /** Merged over the filtered parent environment; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** Default `<repo>/services/<name>/dist/main.js`. */
  script?: string;
  /** Node flags after the services' own (SERVICE_NODE_FLAGS), before the telemetry module's `--import`. */
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

function start(name: string, opts: SpawnServiceOptions, onLine: (line: string, stream: 'stdout' | 'stderr') => void = () => {}): ServiceChild {
  const script = opts.script ?? serviceScript(name);
  if (!existsSync(script)) throw new Error(`${name}: ${script} does not exist; build it first (npm run build)`);
  const args = nodeArgsFor(repoRoot, script, { extra: opts.nodeArgs, telemetry: opts.telemetry ?? opts.script === undefined });
  return startProcess({ name, command: process.execPath, args, env: serviceEnv(opts.env), cwd: opts.cwd ?? repoRoot }, onLine);
}

/** Starts a built service and resolves once it logs `"msg":"ready"`. */
export async function spawnService(name: string, opts: SpawnServiceOptions = {}): Promise<ServiceProcess> {
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  const logs: string[] = [];
  const child = start(name, opts, (line) => logs.push(line));
  const tail = () => logs.slice(-30).join('\n');
  const ports = await child.ready(readyTimeoutMs).catch(async (err: Error) => {
    child.kill();
    await child.exited;
    throw new Error(`${err.message}; last log lines:\n${tail()}`);
  });

  return {
    name,
    pid: child.pid ?? 0,
    ports,
    logs,
    exited: child.exited,
    waitForLog(re, timeoutMs = 10_000, fromLine = 0) {
      return child.until(
        () => {
          const hit = logs.slice(fromLine).find((l) => re.test(l));
          if (hit !== undefined) return hit;
          const status = child.status();
          if (status) throw new Error(`${name} ${describeExit(status)} without logging ${re}; last log lines:\n${tail()}`);
          return undefined;
        },
        timeoutMs,
        () => new Error(`${name} did not log ${re} within ${timeoutMs} ms; last log lines:\n${tail()}`),
      );
    },
    stop: (signal = 'SIGTERM', timeoutMs = 30_000) => child.stop(signal, timeoutMs),
    kill: () => child.stop('SIGKILL', 30_000),
  };
}

/** Runs a service that is expected to exit by itself (e.g. on a bad configuration); resolves with its exit code and output. */
export async function runServiceToExit(
  name: string,
  env: Record<string, string | undefined> = {},
  timeoutMs = 20_000,
  opts: Omit<SpawnServiceOptions, 'env' | 'readyTimeoutMs'> = {},
): Promise<RunResult> {
  const out = { stdout: '', stderr: '' };
  const child = start(name, { ...opts, env }, (line, stream) => (out[stream] += `${line}\n`));
  const status = await child
    .until(child.status, timeoutMs, () => new Error(`${name} did not exit within ${timeoutMs} ms`))
    .catch(async (err: Error) => {
      child.kill();
      // Killed first, so that the message has all it wrote.
      await child.exited;
      throw new Error(`${err.message}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
    });
  return { code: status.code, ...out };
}
