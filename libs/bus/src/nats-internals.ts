import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';

/**
 * The one place the relay reaches into nats.js past its public API. Written for this version of
 * @nats-io/nats-core; nats-internals.test.ts fails on any other, so an upgrade re-checks this file.
 */
export const NATS_CORE_WRITTEN_FOR = '3.4.0';

/** The installed @nats-io/nats-core's version. */
export function installedNatsCoreVersion(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('@nats-io/nats-core');
  // The package's main file is lib/mod.js; its package.json is one folder up.
  return (require(join(dirname(main), '..', 'package.json')) as { version: string }).version;
}

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
 * Buys: one socket write (and one read in NATS) per batch of messages a service works on, not one
 * per publish or ack; nats.js has no public option for it.
 *
 * nats.js writes its buffer to the socket in a microtask after the first command put in it. A
 * service working on a batch of messages reaches its publishes and acks in separate microtask runs
 * (each message's handler awaits between them), so each went out in a write of its own. Deferred to
 * `setImmediate`, everything produced while handling what one read brought goes out in one write;
 * nothing waits longer than the rest of the current turn. `close` still writes what is buffered
 * first, and a buffer past nats.js's own limit is written at once.
 */
export function coalesceWrites(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: Protocol }).protocol;
  if (!protocol || typeof protocol.flushPending !== 'function' || typeof protocol.close !== 'function') {
    throw new Error(`nats.js has no protocol.flushPending/close here: coalesceWrites was written for @nats-io/nats-core ${NATS_CORE_WRITTEN_FOR}`);
  }
  const flushNow = protocol.flushPending.bind(protocol);
  const close = protocol.close.bind(protocol);
  let scheduled = false;
  protocol.flushPending = () => {
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
