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
