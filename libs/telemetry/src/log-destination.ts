import sonicBoom, { type SonicBoomOpts } from 'sonic-boom';

// A CommonJS module whose class Node's ESM loader sees only as the default export.
const { SonicBoom } = sonicBoom;
type SonicBoom = InstanceType<typeof SonicBoom>;

/** Named defaults, with units. */
export const LOG_DESTINATION_DEFAULTS = {
  /**
   * Log bytes held while stdout is slow (a supervisor or log shipper that stopped reading); lines
   * beyond it are dropped rather than growing the heap without bound.
   */
  maxBufferBytes: 16 * 1024 * 1024,
  /** Consecutive 100 ms waits on a full stdout before a write gives up, at exit included. */
  maxWriteRetries: 20,
} as const;

let stdoutDestination: SonicBoom | undefined;

/**
 * The process's one asynchronous stdout for log lines. What it still holds is written out when the
 * process exits, bounded: a stdout whose reader is gone (EPIPE) or stopped reading gives up after
 * `maxWriteRetries`, never keeping the process from exiting. pino's own `destination()` flushes at
 * exit with a sonic-boom that retries a broken pipe forever, which left a service whose supervisor
 * was killed running after its stop.
 */
export function logDestination(): SonicBoom {
  if (stdoutDestination) return stdoutDestination;
  // maxWriteRetries is in sonic-boom's README (5.0) but not yet in its type definitions.
  const opts: SonicBoomOpts & { maxWriteRetries: number } = {
    fd: 1,
    sync: false,
    maxLength: LOG_DESTINATION_DEFAULTS.maxBufferBytes,
    maxWriteRetries: LOG_DESTINATION_DEFAULTS.maxWriteRetries,
  };
  const dest = new SonicBoom(opts);
  let broken = false;
  // A stdout that cannot be written is not worth crashing for: nobody could read why.
  dest.on('error', () => {
    broken = true;
  });
  process.once('exit', () => {
    if (broken) return;
    try {
      dest.flushSync();
    } catch {
      // The reader is gone; the remaining lines have nowhere to go.
    }
  });
  stdoutDestination = dest;
  return dest;
}
