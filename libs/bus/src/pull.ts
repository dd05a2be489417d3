import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';

/** Messages pulled from a durable consumer; iterate, and `stop()` to end. */
export interface PulledMessages extends AsyncIterable<JsMsg> {
  stop(): void;
}

export interface PullOptions {
  /**
   * Most messages asked for at a time (nats.js's `max_messages`): pulled messages not yet handed on
   * stay below it, and more are asked for once a quarter of them has been handed on.
   */
  batch: number;
  /**
   * How long one pull request stays open; the server's heartbeats come at half of it, and two
   * missed ones make nats.js look whether the consumer is still there.
   */
  expiresMs?: number;
}

export const PULL_DEFAULTS = { expiresMs: 5_000 };

/**
 * A durable consumer's messages through nats.js's `consume()`. It fails when the consumer is
 * missing, or is deleted while open (`abort_on_missing_resource`), so the caller opens (and makes)
 * it again; a server restart is bridged by nats.js itself. Messages still pulled after `stop()` go
 * back to the consumer after `expiresMs` rather than after the ack wait.
 */
export async function pullMessages(js: JetStreamClient, stream: string, durable: string, opts: PullOptions): Promise<PulledMessages> {
  const consumer = await js.consumers.get(stream, durable);
  const expiresMs = opts.expiresMs ?? PULL_DEFAULTS.expiresMs;
  const messages = await consumer.consume({ max_messages: opts.batch, expires: expiresMs, abort_on_missing_resource: true });
  let stopped = false;
  async function* handOn(): AsyncGenerator<JsMsg> {
    for await (const m of messages) {
      // NATS 2.9 keeps an abandoned pull request until it expires and may hand it a message
      // redelivered before then: the nak waits that long, still far less than the ack wait.
      if (stopped) m.nak(expiresMs);
      else yield m;
    }
  }
  const gen = handOn();
  return {
    stop() {
      stopped = true;
      messages.stop();
    },
    [Symbol.asyncIterator]: () => gen,
  };
}
