import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { deadline, nanos, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import {
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { RelayError, ErrorCode, STOP_FORCE_MS, within } from '@relay/core';
import { EnvelopeSchema, StatusEventSchema, type Envelope, type MessageState, type StatusEvent } from '@relay/proto';
import { busNames, type BusNames } from './names.js';
import { applyLimits, ensureStreams, storeLimit, streamConfigs, TOPOLOGY_DEFAULTS, type StoreName, type TopologyOptions } from './topology.js';
import { tracedPublish } from './trace.js';
import { boundDetail, MAX_STATUS_REMEDY_BYTES } from './status-detail.js';
import { coalesceWrites } from './nats-internals.js';
import { rememberInboxPrefix } from './inbox.js';
import { hasCredentials, natsConnectOptions, type NatsAuthOptions } from './nats-connect.js';

export interface BusOptions {
  servers: string;
  prefix: string;
  /** Connection name shown by the server (service name and pid). */
  name: string;
  topology?: Partial<TopologyOptions>;
  /** Publish timeout; a publish not stored by then fails (UNAVAILABLE to callers). */
  publishTimeoutMs?: number;
  /** Credentials and TLS; none is a development setup, which is logged as a warning. */
  auth?: NatsAuthOptions;
  /** Where replies and pulled messages arrive: the inbox subjects this user may subscribe to. */
  inboxPrefix?: string;
  log?: { warn(obj: object, msg: string): void };
}

export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly names: BusNames;
  readonly idempotency: KV;
  readonly bodies: ObjectStore;
  /** Envelopes of FAILED messages, for RetryMessages (see dead-letters.ts). */
  readonly failed: ObjectStore;
  /** The message index (see message-index.ts). */
  readonly messages: KV;
  /** The topology this connection was made with (limits, retention). */
  readonly topology: TopologyOptions;
  /** Largest payload one broker message may carry. */
  readonly maxPayload: number;
  /**
   * Publishes an envelope in a PRODUCER span and waits until JetStream stored it; the headers sent
   * are a copy of `headers` carrying the active trace context.
   */
  publishEnvelope(subject: string, env: Envelope, msgId: string, headers?: MsgHdrs): Promise<PubAck>;
  /**
   * Publishes a status event and waits until JetStream stored it; with `msgId`, publishing the same
   * event again within the duplicate window stores it once.
   */
  publishStatus(ev: StatusInit, headers?: MsgHdrs, msgId?: string): Promise<PubAck>;
  /**
   * Publishes a status event without waiting for JetStream's ack. For informational events
   * (QUEUED, SENDING) that precede a confirmed publish on the same connection: the server handles
   * one connection's messages in order, so once the later publish is stored this one is too.
   */
  noteStatus(ev: StatusInit, headers?: MsgHdrs): void;
  /** Every status event of a message, oldest first; empty when the message is unknown. */
  history(messageId: string): Promise<StatusEvent[]>;
  /** The newest status event of a message, if any. */
  lastStatus(messageId: string): Promise<StatusEvent | undefined>;
  /** True when the server answers a round trip in time. */
  healthy(timeoutMs?: number): Promise<boolean>;
  /**
   * Drains the connection (what was published is flushed, subscriptions end); after `forceMs`
   * (default STOP_FORCE_MS) it is closed instead, since a drain waits for a broker that may be gone.
   */
  close(forceMs?: number): Promise<void>;
}

/** A status event to publish; the summary fields (client, subject, to) only on QUEUED at accept. */
export type StatusInit = Omit<StatusEvent, '$typeName' | 'at' | 'client' | 'subject' | 'to' | 'remedy' | 'traceId' | 'recipientCount' | 'outcomes'> & {
  at?: Date;
  client?: string;
  subject?: string;
  to?: string[];
  remedy?: string;
  traceId?: string;
  recipientCount?: number;
  outcomes?: StatusEvent['outcomes'];
};

export const PUBLISH_TIMEOUT_MS = 5_000;

/** Connects to NATS and makes sure the relay's streams and buckets exist. */
export async function connectBus(opts: BusOptions): Promise<Bus> {
  const names = busNames(opts.prefix);
  const topo = { ...TOPOLOGY_DEFAULTS, ...opts.topology };
  // Outside the try: an unreadable seed or credentials file is a configuration error, not an outage.
  const authOptions = natsConnectOptions(opts.auth);
  let nc: NatsConnection;
  try {
    if (!hasCredentials(opts.auth)) {
      opts.log?.warn(
        { nats: opts.servers },
        'connecting to NATS without credentials (a development setup): set NATS_CREDS, NATS_USER and NATS_PASSWORD, or NATS_NKEY_SEED_FILE',
      );
    }
    // noAsyncTraces: nats.js otherwise makes two Error objects (stack traces) for every request,
    // each JetStream publish included, and one more when it settles: about a third of the
    // scheduler's CPU per message in profiles. Errors still carry their message and cause.
    nc = await connect({
      servers: opts.servers,
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      noAsyncTraces: true,
      ...authOptions,
      ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
    });
    rememberInboxPrefix(nc, opts.inboxPrefix);
    coalesceWrites(nc);
  } catch (err) {
    throw new RelayError(ErrorCode.Unavailable, `cannot connect to NATS at ${opts.servers}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const timeout = opts.publishTimeoutMs ?? PUBLISH_TIMEOUT_MS;
    const js = jetstream(nc, { timeout });
    const jsm = await jetstreamManager(nc, { timeout });
    await ensureStreams(jsm, streamConfigs(names, topo));
    const kvm = new Kvm(js);
    const idempotency = await kvm.create(names.idempotencyBucket, { ttl: topo.idempotencyTtlMs, history: 1, replicas: topo.replicas });
    const objm = new Objm(js);
    const bodies = await objm.create(names.bodyBucket, { replicas: topo.replicas });
    const failed = await objm.create(names.failedBucket, { replicas: topo.replicas, ttl: nanos(topo.failedRetentionMs) });
    const messages = await kvm.create(names.messagesBucket, { ttl: topo.failedRetentionMs, history: 1, replicas: topo.replicas });
    // Buckets are made with the store's defaults; their limits are set like the streams' (and
    // updated on an existing bucket).
    const bucketLimits: Array<[string, StoreName, number | undefined]> = [
      [`OBJ_${names.bodyBucket}`, 'bodies', undefined],
      [`OBJ_${names.failedBucket}`, 'failed', topo.failedRetentionMs],
      [`KV_${names.messagesBucket}`, 'messages', topo.failedRetentionMs],
      [`KV_${names.idempotencyBucket}`, 'idempotency', topo.idempotencyTtlMs],
    ];
    for (const [stream, store, ageMs] of bucketLimits) {
      const l = storeLimit(topo, store);
      const info = await jsm.streams.info(stream);
      await applyLimits(jsm, info.config, { max_msgs: l.maxMessages, max_bytes: l.maxBytes, ...(ageMs ? { max_age: nanos(ageMs) } : {}) });
    }
    return createBus(nc, js, jsm, names, idempotency, bodies, failed, messages, topo);
  } catch (err) {
    await nc.close().catch(() => {});
    throw err;
  }
}

function createBus(
  nc: NatsConnection,
  js: JetStreamClient,
  jsm: JetStreamManager,
  names: BusNames,
  idempotency: KV,
  bodies: ObjectStore,
  failed: ObjectStore,
  messages: KV,
  topology: TopologyOptions,
): Bus {
  return {
    nc,
    js,
    jsm,
    names,
    idempotency,
    bodies,
    failed,
    messages,
    topology,
    maxPayload: nc.info?.max_payload ?? 1024 * 1024,
    publishEnvelope(subject, env, msgId, headers) {
      const data = takeEncoding(env);
      return tracedPublish({ subject, messageId: env.messageId, natsMsgId: msgId, bodySize: data.length, sender: env.sender }, headers, (h) =>
        js.publish(subject, data, { msgID: msgId, headers: h }),
      );
    },
    publishStatus(ev, headers, msgId) {
      return js.publish(names.statusSubject(ev.messageId), encodeStatus(ev), { msgID: msgId, headers });
    },
    noteStatus(ev, headers) {
      nc.publish(names.statusSubject(ev.messageId), encodeStatus(ev), headers ? { headers } : undefined);
    },
    async history(messageId) {
      const subject = names.statusSubject(messageId);
      const events: StatusEvent[] = [];
      let seq = 1;
      // Direct gets walk the message's own subject; no consumer is created for a status read.
      for (;;) {
        let m;
        try {
          m = await jsm.direct.getMessage(names.statusStream, { seq, next_by_subj: subject });
        } catch (err) {
          if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.NoMessageFound) break;
          throw err;
        }
        if (!m) break;
        events.push(fromBinary(StatusEventSchema, m.data));
        seq = m.seq + 1;
      }
      return events;
    },
    async lastStatus(messageId) {
      const m = await jsm.direct.getMessage(names.statusStream, { last_by_subj: names.statusSubject(messageId) }).catch((err: unknown) => {
        if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.NoMessageFound) return null;
        throw err;
      });
      return m ? fromBinary(StatusEventSchema, m.data) : undefined;
    },
    async healthy(timeoutMs = 1_000) {
      if (nc.isClosed()) return false;
      try {
        await deadline(nc.flush(), timeoutMs);
        return true;
      } catch {
        return false;
      }
    },
    async close(forceMs = STOP_FORCE_MS) {
      if (nc.isClosed()) return;
      if (!(await within(nc.drain(), forceMs)) || !nc.isClosed()) await nc.close().catch(() => {});
    },
  };
}

/** Every status event goes out through here, so none outgrows a broker message (see boundDetail). */
function encodeStatus(ev: StatusInit): Uint8Array {
  return toBinary(
    StatusEventSchema,
    create(StatusEventSchema, {
      ...ev,
      detail: boundDetail(ev.detail),
      remedy: ev.remedy ? boundDetail(ev.remedy, MAX_STATUS_REMEDY_BYTES) : '',
      at: timestampFromDate(ev.at ?? new Date()),
    }),
  );
}

export function decodeEnvelope(data: Uint8Array): Envelope {
  return fromBinary(EnvelopeSchema, data);
}

export function encodeEnvelope(env: Envelope): Uint8Array {
  return toBinary(EnvelopeSchema, env);
}

/**
 * Bytes an envelope was encoded to when its size was checked (packEnvelope), for the publish that
 * follows: taken once, so an envelope changed and published again is encoded again.
 */
const encodedForPublish = new WeakMap<Envelope, Uint8Array>();

export function keepEncoding(env: Envelope, bytes: Uint8Array): void {
  encodedForPublish.set(env, bytes);
}

function takeEncoding(env: Envelope): Uint8Array {
  const bytes = encodedForPublish.get(env);
  if (!bytes) return encodeEnvelope(env);
  encodedForPublish.delete(env);
  return bytes;
}

export { timestampDate, timestampFromDate };
export type { MessageState };
