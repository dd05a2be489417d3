/**
 * Lets tests wait for state that changes over time (messages arriving, log lines) without
 * polling: whoever changes the state calls `notify()`, and each waiter re-checks its condition.
 */
export class Changes {
  #waiters = new Set<() => void>();

  notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Resolves with the first defined value `check` returns; `check` may throw to give up early.
   * Rejects with `onTimeout()` after `timeoutMs`.
   */
  until<T>(check: () => T | undefined, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter = () => {
        let value: T | undefined;
        try {
          value = check();
        } catch (err) {
          done();
          reject(err);
          return;
        }
        if (value !== undefined) {
          done();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(onTimeout());
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      this.#waiters.add(waiter);
      waiter();
    });
  }
}

/**
 * Polls `probe` every 50 ms until it returns a defined value, for state no event announces (a
 * consumer's pending count, a status in the broker); rejects after `timeoutMs`.
 */
export async function eventually<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
