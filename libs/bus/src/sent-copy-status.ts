import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Kvm, type KV } from '@nats-io/kv';
import { SentCopySchema, type SentCopy, type SentCopyState } from '@relay/proto';
import type { Bus } from './bus.js';
import { boundDetail } from './status-detail.js';

// Where a message's copy to its Sent folder stands (copy_to_sent), for GetMessage. A record of its
// own, not a status event: the message stays SENT, and no state change (no webhook) comes of it.

/** How long an entry is kept (the bucket's max_age: NATS 2.9 has no per-key TTL); as long as status events by default. */
export const SENT_COPY_STATUS_MAX_AGE_MS = 7 * 86_400_000;

const buckets = new WeakMap<Bus, Promise<KV>>();

/** The `<prefix>-sent-copies` bucket (made when missing), one handle per bus. */
export function openSentCopyBucket(bus: Bus): Promise<KV> {
  let kv = buckets.get(bus);
  if (!kv) {
    kv = new Kvm(bus.js).create(bus.names.sentCopiesBucket, {
      history: 1,
      ttl: SENT_COPY_STATUS_MAX_AGE_MS,
      replicas: bus.topology.replicas,
      maxValueSize: 8192,
    });
    kv.catch(() => buckets.delete(bus));
    buckets.set(bus, kv);
  }
  return kv;
}

export interface SentCopyUpdate {
  state: SentCopyState;
  folder?: string;
  attempts: number;
  lastError?: string;
  at?: Date;
}

/** Records where the copy of `messageId` stands, replacing what was recorded before. */
export async function putSentCopyStatus(bus: Bus, messageId: string, u: SentCopyUpdate): Promise<void> {
  const kv = await openSentCopyBucket(bus);
  const record = create(SentCopySchema, {
    state: u.state,
    folder: u.folder ? boundDetail(u.folder, 1024) : '',
    attempts: u.attempts,
    lastError: u.lastError ? boundDetail(u.lastError) : '',
    at: timestampFromDate(u.at ?? new Date()),
  });
  await kv.put(messageId, toBinary(SentCopySchema, record));
}

/** Where the copy of `messageId` stands; undefined when nothing was recorded (no copy_to_sent, or not tried yet). */
export async function getSentCopyStatus(bus: Bus, messageId: string): Promise<SentCopy | undefined> {
  const kv = await openSentCopyBucket(bus);
  const e = await kv.get(messageId);
  if (e?.operation !== 'PUT' || e.value.length === 0) return undefined;
  return fromBinary(SentCopySchema, e.value);
}
