import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { DeliverPolicy, type JsMsg } from '@nats-io/jetstream';
import { describe, InFlight, within } from '@relay/core';
import { MessageRecordSchema, MessageState, StatusEventSchema, type MessageRecord, type StatusEvent } from '@relay/proto';
import type { Bus } from './bus.js';
import type { ConsumeLoop } from './consume-loop.js';
import { workDurable } from './consumers.js';

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
    if (ev.state === MessageState.RETRYING || ev.state === MessageState.FAILED || ev.state === MessageState.BOUNCED)
      r.lastError = clip(ev.detail, INDEX_BOUNDS.errorChars);
  }
  return r;
}

export interface MessageIndexer {
  start(): Promise<void>;
  stop(graceMs: number): Promise<void>;
}

export interface MessageIndexerOptions {
  /** Index writes in flight at once. */
  concurrency: number;
  ackWaitMs: number;
  /** How long a message's events wait for more of its events before they are written together. */
  lingerMs: number;
  /** Messages whose events wait at once; beyond it the oldest are written at once. */
  maxWaiting: number;
}

export const MESSAGE_INDEXER_DEFAULTS: MessageIndexerOptions = { concurrency: 64, ackWaitMs: 30_000, lingerMs: 100, maxWaiting: 2_048 };

const CAS_TRIES = 8;
const RECENT_MAX = 10_000;

/** States after which a message usually has no more events soon: its record is written at once. */
const SETTLING = new Set<MessageState>([MessageState.SENT, MessageState.FAILED, MessageState.RETRYING, MessageState.BOUNCED]);

interface Waiting {
  events: Array<{ ev: StatusEvent; m: JsMsg }>;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Keeps the message index (KV `<prefix>-messages`) from the status stream: one durable consumer
 * that every ingest replica shares, each message's events folded into its record with a
 * compare-and-set, so replicas working on events of one message never lose each other's writes.
 * A message's events that arrive close together (QUEUED, SENDING, SENT) are written as one update.
 */
export function createMessageIndexer(bus: Bus, log: { warn(obj: object, msg: string): void }, options: Partial<MessageIndexerOptions> = {}): MessageIndexer {
  const opts = { ...MESSAGE_INDEXER_DEFAULTS, ...options };
  const inFlight = new InFlight();
  let loop: ConsumeLoop | undefined;
  const durable = bus.names.messagesIndexConsumer;
  const waiting = new Map<string, Waiting>();

  // The records this replica wrote last, with their revisions: a message's next event then costs
  // one write instead of a read and a write. A stale entry fails its compare-and-set and is read again.
  const recent = new Map<string, { record: MessageRecord; revision: number }>();
  const remember = (id: string, record: MessageRecord, revision: number) => {
    recent.delete(id);
    recent.set(id, { record, revision });
    if (recent.size > RECENT_MAX) recent.delete(recent.keys().next().value!);
  };

  async function apply(id: string, events: Waiting['events']) {
    // A message's first event (QUEUED at submission) needs no read: the record is created.
    let fresh = events.some(({ ev }) => ev.state === MessageState.QUEUED && ev.attempt === 0);
    for (let i = 0; i < CAS_TRIES; i++) {
      let known = i === 0 ? recent.get(id) : undefined;
      if (!known && !fresh) {
        const entry = await bus.messages.get(id);
        if (entry && entry.operation === 'PUT' && entry.value.length > 0)
          known = { record: fromBinary(MessageRecordSchema, entry.value), revision: entry.revision };
      }
      const next = events.reduce<MessageRecord | undefined>((r, { ev, m }) => foldIndexRecord(r, ev, m.seq), known?.record)!;
      try {
        const bytes = toBinary(MessageRecordSchema, next);
        const revision = known ? await bus.messages.update(id, bytes, known.revision) : await bus.messages.create(id, bytes);
        remember(id, next, revision);
        return;
      } catch (err) {
        // Another replica wrote the record meanwhile (or it existed): fold again on its version.
        recent.delete(id);
        fresh = false;
        if (i === CAS_TRIES - 1) throw err;
      }
    }
  }

  /** Writes a message's waiting events as one update; acks them, or naks them to come back. */
  async function write(id: string) {
    const w = waiting.get(id);
    if (!w) return;
    waiting.delete(id);
    clearTimeout(w.timer);
    try {
      await apply(id, w.events);
      for (const { m } of w.events) m.ack();
    } catch (err) {
      log.warn({ err: describe(err), message_id: id }, 'could not update the message index; will try again');
      for (const { m } of w.events) {
        try {
          m.nak(1_000);
        } catch {
          // connection closed: the ack wait brings it back
        }
      }
    }
  }

  async function each(m: JsMsg) {
    let ev: StatusEvent;
    try {
      ev = fromBinary(StatusEventSchema, m.data);
    } catch (err) {
      log.warn({ err: describe(err), seq: m.seq }, 'not a status event; left out of the message index');
      m.term();
      return;
    }
    const id = ev.messageId;
    const w = waiting.get(id);
    if (w) w.events.push({ ev, m });
    else waiting.set(id, { events: [{ ev, m }], timer: setTimeout(() => void inFlight.run(() => write(id)), opts.lingerMs) });
    if (SETTLING.has(ev.state)) await write(id);
    else if (waiting.size > opts.maxWaiting) await write(waiting.keys().next().value!);
  }

  async function flushAll() {
    await Promise.all([...waiting.keys()].map((id) => inFlight.run(() => write(id))));
  }

  return {
    async start() {
      const { statusStream: stream, statusWildcard: filterSubject } = bus.names;
      // Room for the events that wait for their message's next one, besides the writes.
      const maxAckPending = opts.maxWaiting * 2 + opts.concurrency * 4;
      loop = await workDurable(
        bus,
        { stream, durable, filterSubject, ackWaitMs: opts.ackWaitMs, maxAckPending, concurrency: opts.concurrency, inFlight },
        each,
        log,
      );
    },
    async stop(graceMs) {
      loop?.stop();
      // What waits for more events is written now; a write that does not finish in time is
      // left unacked, and another replica (or this one after a restart) does it again.
      await within(flushAll(), graceMs);
      await within(inFlight.idle(), graceMs);
      await loop?.done.catch(() => {});
      await within(flushAll(), graceMs);
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

/**
 * Visits the records of the index (the latest value of each key), at most `max` of them; resolves
 * with how many were visited and whether that was all. Only the small bounded records are read,
 * never a message's body.
 */
export async function scanIndex(bus: Bus, max: number, visit: (r: MessageRecord) => void): Promise<{ visited: number; complete: boolean }> {
  const stream = `KV_${bus.names.messagesBucket}`;
  const info = await bus.jsm.streams.info(stream);
  if (info.state.messages === 0) return { visited: 0, complete: true };
  const consumer = await bus.js.consumers.get(stream, { deliver_policy: DeliverPolicy.LastPerSubject, filter_subjects: `$KV.${bus.names.messagesBucket}.>` });
  let visited = 0;
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: Math.min(1_000, max - visited + 1), expires: 2_000 });
      let pending = -1;
      let got = 0;
      for await (const m of batch) {
        got++;
        pending = m.info.pending;
        if (!m.headers?.get('KV-Operation') && m.data.length > 0) {
          if (visited === max) return { visited, complete: false };
          visit(fromBinary(MessageRecordSchema, m.data));
          visited++;
        }
        if (pending === 0) break;
      }
      if (pending === 0 || got === 0) return { visited, complete: true };
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
}
