import type { KV } from '@nats-io/kv';
import { Kvm } from '@nats-io/kv';
import type { Bus } from '@relay/bus';

/** Attempts kept per endpoint (the bucket's history per key; NATS allows at most 64). */
export const DELIVERY_LOG_DEPTH = 64;
/** How long an endpoint's log is kept after its last attempt. */
const LOG_MAX_AGE_MS = 7 * 86_400_000;

/** One attempt to deliver one event, as ListWebhookDeliveries shows it. */
export interface DeliveryRecord {
  at: string;
  event_id: string;
  event_type: string;
  message_id: string;
  attempt: number;
  status_code: number;
  error: string;
  response: string;
  duration_ms: number;
}

export interface DeliveryLog {
  record(endpoint: string, r: DeliveryRecord): Promise<void>;
  /** Attempts made so far to deliver one event (JetStream's count also has the times it waited for an earlier event). */
  attempts(endpoint: string, eventId: string): Promise<number>;
  /** One more failed attempt of the event. */
  failed(endpoint: string, eventId: string, attempts: number): Promise<void>;
  /** The event is delivered: its count goes. */
  delivered(endpoint: string, eventId: string): Promise<void>;
  /** The newest `limit` attempts, newest first. */
  recent(endpoint: string, limit: number): Promise<DeliveryRecord[]>;
}

/** The delivery log: a KV bucket whose history per key (an endpoint) is its last attempts. */
export async function openDeliveryLog(bus: Bus): Promise<DeliveryLog> {
  const kv: KV = await new Kvm(bus.js).create(bus.names.webhookLogBucket, {
    history: DELIVERY_LOG_DEPTH,
    ttl: LOG_MAX_AGE_MS,
    replicas: bus.topology.replicas,
  });
  const countKey = (endpoint: string, eventId: string) => `${endpoint}.attempts.${eventId}`;
  return {
    async record(endpoint, r) {
      await kv.put(endpoint, JSON.stringify(r));
    },
    async attempts(endpoint, eventId) {
      const e = await kv.get(countKey(endpoint, eventId));
      return e && e.operation === 'PUT' ? Number(e.string()) || 0 : 0;
    },
    async failed(endpoint, eventId, attempts) {
      await kv.put(countKey(endpoint, eventId), String(attempts));
    },
    async delivered(endpoint, eventId) {
      await kv.purge(countKey(endpoint, eventId));
    },
    async recent(endpoint, limit) {
      const out: DeliveryRecord[] = [];
      const it = await kv.history({ key: endpoint });
      for await (const e of it) {
        if (e.operation === 'PUT' && e.value.length > 0) out.push(e.json<DeliveryRecord>());
      }
      return out.reverse().slice(0, limit);
    },
  };
}
