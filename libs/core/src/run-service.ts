import { describe as describeError, isConfigError } from './errors.js';
import { EXIT_FORCE_MS } from './lifecycle.js';
import { missingNodeFlags } from './node-flags.js';
import { watchParent } from './parent-watch.js';

export interface RunnableService {
  /** Begins taking work; resolves with the ports the service listens on. */
  start(): Promise<Record<string, number>>;
  /** Stops taking work, finishes in-flight work within the grace period, closes connections. */
  stop(): Promise<void>;
}

/** What the run loop writes: a pino logger fits. */
export interface RunLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  fatal(obj: object, msg: string): void;
}

export interface BuiltService {
  service: RunnableService;
  logger: RunLogger;
  /**
   * The service's grace period (RELAY_SHUTDOWN_GRACE). Once stopping, the process ends at the
   * latest `forceMs` after it, whatever still runs: a delivery the provider never answers or a
   * broker that is gone must not keep it alive. Unfinished messages stay unacked for redelivery.
   */
  graceMs?: number;
  /** Default EXIT_FORCE_MS. */
  forceMs?: number;
}

export interface RunOptions {
  /**
   * Sends what telemetry still holds once the service stopped; resolves false when it could not in
   * `flushMs` (the exporter's retries would otherwise keep the process alive).
   */
  flush?: () => Promise<boolean>;
  flushMs?: number;
  /** How long the open handles of a service that failed to start may keep the process. */
  failedStartExitMs?: number;
}

/**
 * create → start → wait for SIGTERM/SIGINT → stop, for a service's main.ts. A bad configuration
 * prints one line naming the key and sets exit code 1; a clean stop sets 0, and one cut short by
 * the force time ends the process with 1.
 */
export async function runService(proc: NodeJS.Process, name: string, build: () => Promise<BuiltService>, opts: RunOptions = {}): Promise<void> {
  let built: BuiltService;
  try {
    built = await build();
  } catch (err) {
    proc.stderr.write(`${name}: ${isConfigError(err) ? '' : 'cannot start: '}${describeError(err)}\n`);
    proc.exitCode = 1;
    return;
  }
  const { service, logger } = built;
  const forceExitAfterMs = built.graceMs === undefined ? undefined : built.graceMs + (built.forceMs ?? EXIT_FORCE_MS);
  const missing = missingNodeFlags(proc.execArgv, proc.env.NODE_OPTIONS);
  if (missing.length > 0) {
    logger.warn({ missing }, `started without ${missing.join(' ')}: expect longer garbage-collection pauses under load (README, Operations)`);
  }
  // The only place the process is ended by force: open sockets, a provider or broker that never
  // answers, or an exporter's retries would otherwise keep it alive past every deadline.
  const endNow = (code: number | string) => {
    proc.exitCode = code;
    proc.exit(code);
  };
  let stopping: Promise<void> | undefined;
  const stop = (signal: string): Promise<void> => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      endNow(proc.exitCode ?? 1);
      return stopping;
    }
    logger.info({ signal }, 'stopping');
    let stopped = false;
    if (forceExitAfterMs !== undefined) {
      // Unref'd: a process that ends by itself is not held up by this timer.
      setTimeout(() => {
        logger.error(
          { after_ms: forceExitAfterMs, stopped },
          stopped
            ? 'stopped, but open connections kept the process alive; exiting'
            : 'stop not finished within the grace period and force time; exiting, unfinished messages will be redelivered',
        );
        endNow(stopped ? (proc.exitCode ?? 0) : 1);
      }, forceExitAfterMs).unref();
    }
    stopping = service.stop().then(
      async () => {
        // Spans of the last messages leave before the process does, unless the collector cannot take them now.
        const flushed = opts.flush ? await opts.flush() : true;
        if (!flushed)
          logger.warn({ within_ms: opts.flushMs }, 'last spans and metrics not exported in time (is the OTLP collector reachable?); exiting without them');
        logger.info({}, 'stopped');
        proc.exitCode ??= 0;
        stopped = true;
        if (!flushed) endNow(proc.exitCode);
      },
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        proc.exitCode = 1;
      },
    );
    return stopping;
  };
  proc.on('SIGTERM', () => void stop('SIGTERM'));
  proc.on('SIGINT', () => void stop('SIGINT'));
  // An orphan (its supervisor killed) stops as on SIGTERM, or lets a stop already begun finish,
  // then exits without waiting for open handles: nobody is left to signal it again.
  watchParent(proc, () => void (stopping ?? stop('parent exited')).finally(() => endNow(proc.exitCode ?? 0)));
  try {
    const ports = await service.start();
    logger.info({ ports }, 'ready');
  } catch (err) {
    logger.fatal({ err: describeError(err) }, 'cannot start');
    proc.stderr.write(`${name}: cannot start: ${describeError(err)}\n`);
    proc.exitCode = 1;
    await service.stop().catch(() => {});
    // Open handles of a half-started service must not keep the process alive.
    setTimeout(() => endNow(1), opts.failedStartExitMs ?? 2_000).unref();
  }
}
