import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { DeliverPolicy, type JsMsg } from '@nats-io/jetstream';
import { describe, InFlight, within } from '@relay/core';
import { MessageRecordSchema, MessageState, StatusEventSchema, type MessageRecord, type StatusEvent } from '@relay/proto';
import type { Bus } from './bus.js';
import { batchPull } from './nats-internals.js';
import { consumeLoop, type ConsumeLoop } from './consume-loop.js';
import { ensureDurable } from './consumers.js';

/** Bounds of one index record, whatever the message: the index stays small per message. */
export const INDEX_BOUNDS = { subjectChars: 200, recipients: 5, addressChars: 254, errorChars: 1_000 };

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** The recipients the QUEUED event carries for the index: the first few, clipped. */
export function indexRecipients(...lists: string[][]): string[] {
  return lists
    .flat()
    .slice(0, INDEX_BOUNDS.recipients)
    .map((a) => clip(a, INDEX_BOUNDS.addressChars));
}

/**
 * Folds one status event (stored at stream sequence `seq`) into a message's record. Events may be
 * folded in any order: the summary (client, subject, recipients) comes from whichever event has
 * it, attempts only grow, and state, error and time follow the newest event by sequence.
 */
export function foldIndexRecord(prev: MessageRecord | undefined, ev: StatusEvent, seq: number): MessageRecord {
  const r = prev ? create(MessageRecordSchema, prev) : create(MessageRecordSchema, { messageId: ev.messageId, sender: ev.sender });
  if (ev.client) r.client = ev.client;
  if (ev.subject) r.subject = clip(ev.subject, INDEX_BOUNDS.subjectChars);
  if (ev.to.length > 0) r.to = indexRecipients(ev.to);
  if (!r.sender) r.sender = ev.sender;
  r.attempts = Math.max(r.attempts, ev.attempt);
  if (BigInt(seq) > r.statusSeq) {
    r.statusSeq = BigInt(seq);
    r.state = ev.state;
    r.updatedAt = ev.at;
    if (ev.state === MessageState.RETRYING || ev.state === MessageState.FAILED) r.lastError = clip(ev.detail, INDEX_BOUNDS.errorChars);
  }
  return r;
}

export interface MessageIndexer {
  start(): Promise<void>;
  stop(graceMs: number): Promise<void>;
}

const CAS_TRIES = 8;
const RECENT_MAX = 10_000;

/**
 * Keeps the message index (KV `<prefix>-messages`) from the status stream: one durable consumer
 * that every ingest replica shares, each event folded into its message's record with a
 * compare-and-set, so replicas working on events of one message never lose each other's writes.
 */
export function createMessageIndexer(bus: Bus, log: { warn(obj: object, msg: string): void }, opts = { concurrency: 64, ackWaitMs: 30_000 }): MessageIndexer {
  const inFlight = new InFlight();
  let loop: ConsumeLoop | undefined;
  const durable = bus.names.messagesIndexConsumer;
  const waiting: Array<() => void> = [];

  // The records this replica wrote last, with their revisions: a message's next event then costs
  // one write instead of a read and a write. A stale entry fails its compare-and-set and is read again.
  const recent = new Map<string, { record: MessageRecord; revision: number }>();
  const remember = (id: string, record: MessageRecord, revision: number) => {
    recent.delete(id);
    recent.set(id, { record, revision });
    if (recent.size > RECENT_MAX) recent.delete(recent.keys().next().value!);
  };

  async function apply(m: JsMsg) {
    const ev = fromBinary(StatusEventSchema, m.data);
    const id = ev.messageId;
    for (let i = 0; i < CAS_TRIES; i++) {
      let known = i === 0 ? recent.get(id) : undefined;
      if (!known) {
        const entry = await bus.messages.get(id);
        if (entry && entry.operation === 'PUT' && entry.value.length > 0) known = { record: fromBinary(MessageRecordSchema, entry.value), revision: entry.revision };
      }
      const next = foldIndexRecord(known?.record, ev, m.seq);
      try {
        const bytes = toBinary(MessageRecordSchema, next);
        const revision = known ? await bus.messages.update(id, bytes, known.revision) : await bus.messages.create(id, bytes);
        remember(id, next, revision);
        return;
      } catch (err) {
        // Another replica wrote the record meanwhile: fold again on its version.
        recent.delete(id);
        if (i === CAS_TRIES - 1) throw err;
      }
    }
  }

  async function each(m: JsMsg) {
    if (inFlight.size >= opts.concurrency) await new Promise<void>((r) => waiting.push(r));
    void inFlight
      .run(() =>
        apply(m).then(
          () => m.ack(),
          (err: unknown) => {
            log.warn({ err: describe(err), seq: m.seq }, 'could not update the message index; will try again');
            try {
              m.nak(1_000);
            } catch {
              // connection closed: the ack wait brings it back
            }
          },
        ),
      )
      .finally(() => waiting.shift()?.());
  }

  return {
    async start() {
      const ensure = () =>
        ensureDurable(bus.jsm, {
          stream: bus.names.statusStream,
          durable,
          filterSubject: bus.names.statusWildcard,
          ackWaitMs: opts.ackWaitMs,
          maxAckPending: opts.concurrency * 4,
        });
      await ensure();
      let reopening = false;
      loop = consumeLoop(
        async () => {
          if (reopening) await ensure();
          reopening = true;
          return batchPull(bus.nc, bus.names.statusStream, durable, { batch: opts.concurrency, room: () => opts.concurrency - inFlight.size, lingerMs: 25 });
        },
        each,
        log,
      );
    },
    async stop(graceMs) {
      loop?.stop();
      await within(inFlight.idle(), graceMs);
      await loop?.done.catch(() => {});
    },
  };
}

/** Every record in the index (the latest value of each key), in no particular order. */
export async function readIndex(bus: Bus): Promise<MessageRecord[]> {
  const stream = `KV_${bus.names.messagesBucket}`;
  const info = await bus.jsm.streams.info(stream);
  if (info.state.messages === 0) return [];
  const consumer = await bus.js.consumers.get(stream, { deliver_policy: DeliverPolicy.LastPerSubject, filter_subjects: `$KV.${bus.names.messagesBucket}.>` });
  const out: MessageRecord[] = [];
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 1_000, expires: 2_000 });
      let pending = -1;
      let got = 0;
      for await (const m of batch) {
        got++;
        pending = m.info.pending;
        const op = m.headers?.get('KV-Operation');
        if (!op && m.data.length > 0) out.push(fromBinary(MessageRecordSchema, m.data));
        if (pending === 0) break;
      }
      if (pending === 0 || got === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
  return out;
}

/** One record, if the index has the message. */
export async function readIndexRecord(bus: Bus, messageId: string): Promise<MessageRecord | undefined> {
  const entry = await bus.messages.get(messageId);
  return entry && entry.operation === 'PUT' && entry.value.length > 0 ? fromBinary(MessageRecordSchema, entry.value) : undefined;
}
