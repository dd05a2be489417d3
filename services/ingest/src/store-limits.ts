import { JetStreamApiError } from '@nats-io/jetstream';
import { storeLimit, type Bus, type StoreName } from '@relay/bus';
import { ErrorCode, RelayError } from '@relay/core';

/** JetStream's answers for a stream at its limits (discard new) or a server out of storage. */
const STORE_FULL = new Set([10077, 10047]);

export function isStoreFull(err: unknown): boolean {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) {
    if (e instanceof JetStreamApiError && STORE_FULL.has(e.code)) return true;
    if (!(e instanceof Error)) break;
  }
  return false;
}

const shown = (n: number) => (n < 0 ? 'none' : String(n));

/** RESOURCE_EXHAUSTED naming the store's limit, for a write the store refused as full. */
export function storeFullError(bus: Bus, store: StoreName, cause: unknown): RelayError {
  const l = storeLimit(bus.topology, store);
  return new RelayError(
    ErrorCode.ResourceExhausted,
    `the relay's store is full: limits.store.${store} (max_messages ${shown(l.maxMessages)}, max_bytes ${shown(l.maxBytes)}) is reached; the message was not stored, retry later`,
    { cause },
  );
}

/** Runs a write into `store`; a refusal because the store is full becomes RESOURCE_EXHAUSTED. */
export async function storingIn<T>(bus: Bus, store: StoreName, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw isStoreFull(err) ? storeFullError(bus, store, err) : err;
  }
}
