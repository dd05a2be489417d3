import { setTimeout as sleep } from 'node:timers/promises';

/**
 * After the grace period, how long each remaining step of a stop (a consumer leaving, a connection
 * draining) may take before it is cut short: a broker that is gone must not hold a stop forever.
 */
export const STOP_FORCE_MS = 2_000;

/** A service's process ends at the latest this long after its grace period, whatever still runs. */
export const EXIT_FORCE_MS = 5_000;

/** Runs `fn` once; later calls return the first call's promise (stop() safe to call twice). */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/** Waits for a promise, or gives up after `ms`. Resolves true when the promise settled in time. */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  const ac = new AbortController();
  const timer = sleep(ms, false, { signal: ac.signal }).catch(() => false);
  const done = p.then(
    () => true,
    () => true,
  );
  const settled = await Promise.race([done, timer]);
  ac.abort();
  return settled;
}

/** Counts work in flight and lets a shutdown wait until it is all done. */
export class InFlight {
  #count = 0;
  #waiters: Array<() => void> = [];
  get size() {
    return this.#count;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    this.#count++;
    try {
      return await fn();
    } finally {
      this.#count--;
      if (this.#count === 0) for (const w of this.#waiters.splice(0)) w();
    }
  }
  idle(): Promise<void> {
    return this.#count === 0 ? Promise.resolve() : new Promise((r) => this.#waiters.push(r));
  }
}

/** Exponential backoff with full jitter in [base/2, base] around min(max, initial * 2^(n-1)). */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, random = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + (random() * base) / 2);
}
