import { setTimeout as sleep } from 'node:timers/promises';
import type { JsMsg } from '@nats-io/jetstream';
import type { PulledMessages } from './nats-internals.js';
import { describe } from '@relay/core';

export interface ConsumeLoop {
  /** Stops pulling; `done` settles once the loop has left. */
  stop(): void;
  readonly done: Promise<void>;
}

const REOPEN_DELAY_MS = 1_000;

/**
 * Pulls from a consumer for as long as the service runs. If the message iterator ends or fails
 * while nobody asked (consumer deleted, server restarted), it is opened again rather than leaving
 * the service silently idle. `each` may wait: that is the back-pressure on pulling.
 */
export function consumeLoop(
  open: () => Promise<PulledMessages>,
  each: (m: JsMsg) => Promise<void>,
  log: { warn(obj: object, msg: string): void },
): ConsumeLoop {
  let stopped = false;
  let current: PulledMessages | undefined;
  const done = (async () => {
    while (!stopped) {
      try {
        current = await open();
        if (stopped) current.stop();
        for await (const m of current) await each(m);
      } catch (err) {
        if (!stopped) log.warn({ err: describe(err) }, 'consumer failed; opening it again');
      }
      if (!stopped) await sleep(REOPEN_DELAY_MS);
    }
  })();
  return {
    stop() {
      stopped = true;
      current?.stop();
    },
    done,
  };
}
