import type { NatsConnection } from '@nats-io/nats-core';

/** The part of nats.js's protocol handler (`nc.protocol`, not exported) this module touches. */
interface Protocol {
  outbound: { size(): number };
  pendingLimit: number;
  flushPending(): void;
  close(err?: Error): Promise<void>;
}

/**
 * Makes the connection write what it has buffered once per turn of the event loop instead of once
 * per microtask queue run.
 *
 * nats.js writes its buffer to the socket in a microtask after the first command put in it. A
 * service that works on a batch of messages reaches its publishes and acks in separate microtask
 * runs (each message's handler awaits between them), so each went out in a write of its own: about
 * one write system call per message in the scheduler, and as many reads for NATS. Deferred to
 * `setImmediate`, everything the service produced while handling what one read brought goes out in
 * one write. Nothing waits longer than the rest of the current turn.
 *
 * The protocol handler is nats.js's internal object (pinned version); `close` still writes what is
 * buffered first, as it did, and a buffer past nats.js's own limit is written at once.
 */
export function coalesceWrites(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: Protocol }).protocol;
  if (!protocol || typeof protocol.flushPending !== 'function' || typeof protocol.close !== 'function') {
    throw new Error('nats.js has no protocol.flushPending/close here: coalesceWrites needs the pinned @nats-io/nats-core');
  }
  const flushNow = protocol.flushPending.bind(protocol);
  const close = protocol.close.bind(protocol);
  let scheduled = false;
  protocol.flushPending = () => {
    // A buffer past nats.js's limit (a large body's chunks) still goes out at once.
    if (protocol.outbound.size() >= protocol.pendingLimit) return flushNow();
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
  protocol.close = (err?: Error) => {
    flushNow();
    return close(err);
  };
}
