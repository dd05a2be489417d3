import { describe as describeError, EXIT_FORCE_MS, isConfigError, missingNodeFlags } from '@relay/core';
import type { Logger } from './logger.js';
import { watchParent } from './parent-watch.js';
import { shutdownTelemetry, TELEMETRY_DEFAULTS } from './state.js';

export interface RunnableService {
  /** Begins taking work; resolves with the ports the service listens on. */
  start(): Promise<Record<string, number>>;
  /** Stops taking work, finishes in-flight work within the grace period, closes connections. */
  stop(): Promise<void>;
}

export interface BuiltService {
  service: RunnableService;
  logger: Logger;
  /**
   * The service's grace period (RELAY_SHUTDOWN_GRACE). Once stopping, the process ends at the
   * latest `forceMs` after it, whatever still runs: a delivery the provider never answers or a
   * broker that is gone must not keep it alive. Unfinished messages stay unacked for redelivery.
   */
  graceMs?: number;
  /** Default EXIT_FORCE_MS. */
  forceMs?: number;
}

/**
 * create → start → wait for SIGTERM/SIGINT → stop, for a service's main.ts. A bad configuration
 * prints one line naming the key and exits 1; a clean stop exits 0, and one cut short by the force
 * time exits 1.
 */
export async function runService(proc: NodeJS.Process, name: string, build: () => Promise<BuiltService>): Promise<void> {
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
  let stopping: Promise<void> | undefined;
  const stop = (signal: string): Promise<void> => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      proc.exit(proc.exitCode ?? 1);
    }
    logger.info({ signal }, 'stopping');
    let stopped = false;
    if (forceExitAfterMs !== undefined) {
      // Unref'd: a process that ends by itself is not held up by this timer.
      setTimeout(() => {
        logger.error({ after_ms: forceExitAfterMs, stopped }, stopped ? 'stopped, but open connections kept the process alive; exiting' : 'stop not finished within the grace period and force time; exiting, unfinished messages will be redelivered');
        proc.exit(stopped ? (proc.exitCode ?? 0) : 1);
      }, forceExitAfterMs).unref();
    }
    stopping = service.stop().then(
      async () => {
        // Spans of the last messages leave before the process does, unless the collector cannot take them now.
        const flushed = await shutdownTelemetry();
        if (!flushed) logger.warn({ within_ms: TELEMETRY_DEFAULTS.shutdownFlushMs }, 'last spans and metrics not exported in time (is the OTLP collector reachable?); exiting without them');
        logger.info('stopped');
        proc.exitCode ??= 0;
        stopped = true;
        // The exporter's retries would keep the process alive until their own timeout.
        if (!flushed) proc.exit();
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
  watchParent(proc, () => void (stopping ?? stop('parent exited')).finally(() => proc.exit()));
  try {
    const ports = await service.start();
    logger.info({ ports }, 'ready');
  } catch (err) {
    logger.fatal({ err: describeError(err) }, 'cannot start');
    proc.stderr.write(`${name}: cannot start: ${describeError(err)}\n`);
    proc.exitCode = 1;
    await service.stop().catch(() => {});
    // Open handles of a half-started service must not keep the process alive.
    setTimeout(() => proc.exit(1), 2_000).unref();
  }
}
