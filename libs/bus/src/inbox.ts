import { createInbox, type NatsConnection } from '@nats-io/nats-core';

// The inbox prefix a connection was opened with: nats.js keeps its options private, and the
// relay's own subscriptions (acks of publishes, pulled batches) must use the same prefix, the
// only inbox subjects the service's NATS user may subscribe to.
const prefixes = new WeakMap<NatsConnection, string>();

export function rememberInboxPrefix(nc: NatsConnection, prefix: string | undefined): void {
  if (prefix) prefixes.set(nc, prefix);
}

/** A new inbox subject under the connection's prefix (`_INBOX` by default). */
export function newInbox(nc: NatsConnection): string {
  return createInbox(prefixes.get(nc));
}
