import type { JsMsg } from '@nats-io/jetstream';
import { consumeLoop, type ConsumeLoop, type PulledMessages } from '@relay/bus';
import { InFlight, STOP_FORCE_MS, within } from '@relay/core';

/** A consume loop that works on at most `concurrency()` messages at once (the intake's, a lane's). */
export class BoundedLoop {
  readonly #inFlight = new InFlight();
  readonly #loop: ConsumeLoop;

  constructor(
    open: () => Promise<PulledMessages>,
    concurrency: () => number,
    handle: (m: JsMsg) => Promise<void>,
    log: { warn(obj: object, msg: string): void },
  ) {
    const slots: Array<() => void> = [];
    this.#loop = consumeLoop(
      open,
      async (m) => {
        // Waiting here is the back-pressure on pulling.
        if (this.#inFlight.size >= concurrency()) await new Promise<void>((r) => slots.push(r));
        void this.#inFlight.run(() => handle(m)).finally(() => slots.shift()?.());
      },
      log,
    );
  }

  /** Messages being worked on now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Stops pulling. */
  halt(): void {
    this.#loop.stop();
  }

  /**
   * Waits for the messages in hand (at most `graceMs`), then for the loop to leave (at most
   * `forceMs`: a pull waiting on a broker that is gone must not hold the stop).
   */
  async drain(graceMs: number, forceMs = STOP_FORCE_MS): Promise<void> {
    await within(this.#inFlight.idle(), graceMs);
    await within(this.#loop.done, forceMs);
  }
}
