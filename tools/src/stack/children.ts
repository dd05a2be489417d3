import { EXIT_WITH_PARENT_ENV, PARENT_PID_ENV } from '@relay/core';
import { describeExit, startProcess, type ServiceChild } from '@relay/testkit/service-process';
import { formatLogLine } from './log-lines.js';

/** Named defaults, with units. */
export const CHILD_DEFAULTS = {
  readyTimeoutMs: 30_000,
  graceMs: 30_000,
  /** How many of a child's last lines are kept to show when it fails. */
  keepLines: 40,
} as const;

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env: Record<string, string | undefined>;
  cwd?: string;
}

export interface ReadyChild {
  name: string;
  pid: number;
  /** The `ports` object of the service's ready line. */
  ports: Record<string, number>;
}

/** A child that exited or never became ready: its last lines say why. */
export class ChildError extends Error {
  override name = 'ChildError';
  readonly child: string;
  readonly lastLines: string[];
  /** Those of `lastLines` that were not printed as they came (hidden below warnings without verbose). */
  readonly unshownLines: string[];
  constructor(child: string, message: string, lastLines: string[], unshownLines: string[] = lastLines) {
    super(message);
    this.child = child;
    this.lastLines = lastLines;
    this.unshownLines = unshownLines;
  }
}

export function isChildError(err: unknown): err is ChildError {
  return err instanceof ChildError;
}

export interface SupervisorOptions {
  /** Where shown lines go (the terminal). */
  print: (line: string) => void;
  /** Show every log line, not only warnings, errors and ready lines. */
  verbose?: boolean;
  readyTimeoutMs?: number;
  graceMs?: number;
  /** Name width for aligned `[name]` prefixes. */
  width?: number;
  /** A child that was ready exited while nobody asked it to. */
  onUnexpectedExit?: (err: ChildError) => void;
}

interface Running {
  name: string;
  child: ServiceChild;
  lines: Array<{ line: string; shown: boolean }>;
  stopping: boolean;
}

export interface Supervisor {
  /** Spawns a child and resolves once it logs its ready line; rejects with a ChildError otherwise. */
  start(spec: ChildSpec): Promise<ReadyChild>;
  /**
   * SIGTERM the named children (all when no names), wait up to the grace period, then SIGKILL.
   * Safe to call again; `stop()` after `stop(names)` stops the rest.
   */
  stop(names?: string[]): Promise<void>;
  /** SIGKILL everything at once (a second Ctrl-C). */
  kill(): void;
  /** The last lines of a child, pretty-printed. */
  lastLines(name: string): string[];
}

export function createSupervisor(options: SupervisorOptions): Supervisor {
  const readyTimeoutMs = options.readyTimeoutMs ?? CHILD_DEFAULTS.readyTimeoutMs;
  const graceMs = options.graceMs ?? CHILD_DEFAULTS.graceMs;
  const children = new Map<string, Running>();
  let shuttingDown = false;

  const pretty = (r: Running, which: (l: { shown: boolean }) => boolean = () => true) =>
    r.lines
      .filter(which)
      .map((l) => formatLogLine(r.name, l.line, { verbose: true, width: options.width }))
      .filter((l): l is string => l !== undefined);
  const childError = (r: Running, message: string) =>
    new ChildError(
      r.name,
      message,
      pretty(r),
      pretty(r, (l) => !l.shown),
    );

  const start = async (spec: ChildSpec): Promise<ReadyChild> => {
    if (shuttingDown) throw new ChildError(spec.name, `${spec.name}: not started, the stack is stopping`, []);
    if (children.has(spec.name)) throw new Error(`${spec.name}: already started`);
    // A process group of its own: a terminal's Ctrl-C reaches only the supervisor, which then stops
    // the children in order (credentials last) instead of all of them at once. Their stdin is a pipe
    // nothing is written to: it closes when the supervisor dies, even by SIGKILL, and they stop then;
    // our pid tells them they were re-parented should they look only after we died.
    const env = { ...spec.env, [EXIT_WITH_PARENT_ENV]: '1', [PARENT_PID_ENV]: String(process.pid) };
    const lines: Running['lines'] = [];
    const onLine = (line: string) => {
      const shown = formatLogLine(spec.name, line, { verbose: options.verbose ?? false, width: options.width });
      lines.push({ line, shown: shown !== undefined });
      if (lines.length > CHILD_DEFAULTS.keepLines) lines.shift();
      if (shown !== undefined) options.print(shown);
    };
    const child = startProcess({ ...spec, env, stdin: 'pipe', detached: true, killOnExit: false }, onLine);
    const r: Running = { name: spec.name, child, lines, stopping: false };
    children.set(spec.name, r);

    let ports: Record<string, number>;
    try {
      ports = await child.ready(readyTimeoutMs);
    } catch (err) {
      const timedOut = !child.status() && !child.spawnError();
      // Stopped first, so that its last lines are all there to show.
      if (timedOut) await stopOne(r, Math.min(graceMs, 5_000));
      throw childError(r, timedOut ? `${spec.name}: not ready after ${readyTimeoutMs / 1000} s` : (err as Error).message);
    }
    void child.exited.then((status) => {
      if (!r.stopping && !shuttingDown) options.onUnexpectedExit?.(childError(r, `${spec.name} ${describeExit(status)}`));
    });
    return { name: spec.name, pid: child.pid ?? -1, ports };
  };

  const stopOne = async (r: Running, grace: number) => {
    r.stopping = true;
    await r.child.stop('SIGTERM', grace);
  };

  return {
    start,
    async stop(names) {
      if (!names) shuttingDown = true;
      const targets = [...children.values()].filter((r) => !names || names.includes(r.name));
      await Promise.allSettled(targets.map((r) => stopOne(r, graceMs)));
    },
    kill() {
      shuttingDown = true;
      for (const r of children.values()) {
        r.stopping = true;
        r.child.kill();
      }
    },
    lastLines(name) {
      const r = children.get(name);
      return r ? pretty(r) : [];
    },
  };
}
