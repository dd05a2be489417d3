import { createUser, fromSeed } from '@nats-io/nkeys';
import { busNames } from './names.js';

/** The relay's services, one NATS user each (replicas of a service share it). */
export const SERVICE_KINDS = ['ingest', 'scheduler', 'smtp-sender', 'graph-sender', 'credentials'] as const;
export type ServiceKind = (typeof SERVICE_KINDS)[number];

export interface SubjectPermissions {
  publish: string[];
  subscribe: string[];
}

/** The credentials bucket's name (one per bus prefix). */
export function secretsBucketName(prefix: string): string {
  return `${prefix}-secrets`;
}

/**
 * Where a service's request replies and pulled messages arrive: its own branch of `_INBOX`, so
 * no other user may subscribe to them (the default `_INBOX.>` would let every user read the
 * mail a sender pulls).
 */
export function inboxPrefixFor(kind: ServiceKind): string {
  return `_INBOX.${kind}`;
}

const API = '$JS.API';

/** Ingest's durable on the status stream that gives back client budgets (services/ingest budget-release.ts). */
const CLIENT_BUDGET_CONSUMER = 'ingest-client-budget';

/**
 * What each service may publish and subscribe to on NATS 2.9: its own subjects, the JetStream
 * API calls its work needs on its own streams and consumers, and its own inbox. No one may delete
 * a stream; each may look streams up and create missing ones (services make the topology at
 * start), which cannot change an existing stream. Only the scheduler may update one: it brings
 * the streams' limits to what relay.yaml sets.
 */
export function servicePermissions(kind: ServiceKind, prefix: string): SubjectPermissions {
  const n = busNames(prefix);
  const idemKv = `KV_${n.idempotencyBucket}`;
  const bodies = `OBJ_${n.bodyBucket}`;
  const failed = `OBJ_${n.failedBucket}`;
  const messagesKv = `KV_${n.messagesBucket}`;
  const revokedKv = `KV_${n.consoleRevokedBucket}`;
  const secrets = secretsBucketName(prefix);
  const registry = [`KV_${n.sendersBucket}`, `KV_${n.clientsBucket}`];
  const shared = [n.submittedStream, n.heldStream, n.dispatchStream, n.statusStream, n.pacingStream, idemKv, bodies, failed, messagesKv, ...registry];
  // Every service reads (watches) the registry; only ingest, which serves the operations API, writes it.
  const readRegistry = registry.flatMap((kv) => [
    `${API}.STREAM.MSG.GET.${kv}`,
    `${API}.DIRECT.GET.${kv}`,
    `${API}.DIRECT.GET.${kv}.>`,
    ...orderedConsumer(kv),
  ]);
  const common = [`${API}.INFO`, ...shared.flatMap((s) => [`${API}.STREAM.INFO.${s}`, `${API}.STREAM.CREATE.${s}`]), ...readRegistry];
  const readStatus = [`${API}.DIRECT.GET.${n.statusStream}`, `${API}.DIRECT.GET.${n.statusStream}.>`];
  const readBodies = readObjects(bodies);
  // Settling a message outside delivery: removing its body (purge its chunks, mark it deleted)
  // and keeping its envelope in the failed store (a put over an existing name purges old chunks).
  const dropBody = [`${API}.STREAM.PURGE.${bodies}`, `$O.${n.bodyBucket}.M.>`];
  const keepFailed = [`$O.${n.failedBucket}.>`, `${API}.STREAM.MSG.GET.${failed}`, `${API}.STREAM.PURGE.${failed}`];
  const subscribe = [`${inboxPrefixFor(kind)}.>`];
  switch (kind) {
    case 'ingest':
      return {
        publish: [
          ...common,
          // New mail, RetryMessages' resubmissions; QUEUED, and FAILED for cancelled or unstored mail.
          n.submittedWildcard,
          n.statusWildcard,
          `$KV.${n.idempotencyBucket}.>`,
          `${API}.STREAM.MSG.GET.${idemKv}`,
          `${API}.DIRECT.GET.${idemKv}`,
          `${API}.DIRECT.GET.${idemKv}.>`,
          `$O.${n.bodyBucket}.>`,
          `${API}.STREAM.MSG.GET.${bodies}`,
          `${API}.DIRECT.GET.${bodies}`,
          `${API}.DIRECT.GET.${bodies}.>`,
          // A put over an existing name removes the old chunks.
          `${API}.STREAM.PURGE.${bodies}`,
          ...readStatus,
          // The message index: kept from the status stream, listed by ListMessages.
          ...durableRights(n.statusStream, n.messagesIndexConsumer),
          `$KV.${n.messagesBucket}.>`,
          `${API}.STREAM.MSG.GET.${messagesKv}`,
          `${API}.DIRECT.GET.${messagesKv}`,
          `${API}.DIRECT.GET.${messagesKv}.>`,
          ...orderedConsumer(messagesKv),
          ...durableRights(n.statusStream, CLIENT_BUDGET_CONSUMER),
          // RetryMessages reads the kept envelopes.
          ...readObjects(failed),
          // The operations API changes senders and clients.
          `$KV.${n.sendersBucket}.>`,
          `$KV.${n.clientsBucket}.>`,
          // GetQueueStats reads the pacing log when Redis has no pacing state.
          ...orderedConsumer(n.pacingStream),
          ...webhookRights(n),
          // Console sign-outs: ingest's own bucket, its age limit kept at the sign-in lifetime.
          ...[`INFO`, `CREATE`, `UPDATE`].map((op) => `${API}.STREAM.${op}.${revokedKv}`),
          `$KV.${n.consoleRevokedBucket}.>`,
          ...orderedConsumer(revokedKv),
          // Suppressed recipients: watched for SendMail, entries deleted by DeleteSuppression.
          ...suppressedRights(n),
          // GetMessage reads where a message's copy to Sent stands.
          ...sentCopyStatusRights(n),
        ],
        // WatchMessages: state changes as they are published.
        subscribe: [...subscribe, n.statusWildcard],
      };
    case 'scheduler':
      return {
        publish: [
          ...common,
          ...shared.map((s) => `${API}.STREAM.UPDATE.${s}`),
          n.heldWildcard,
          `${prefix}.dispatch.>`,
          n.statusWildcard,
          `${prefix}.pacing.>`,
          ...[n.submittedStream, n.heldStream, n.pacingStream].flatMap(consumerRights),
          `${API}.STREAM.PURGE.${n.submittedStream}`,
          `${API}.STREAM.MSG.GET.${n.heldStream}`,
          `${API}.STREAM.MSG.GET.${n.dispatchStream}`,
          // The held-mail sweeper reads without consuming and removes what expired.
          `${API}.DIRECT.GET.${n.heldStream}`,
          `${API}.DIRECT.GET.${n.heldStream}.>`,
          `${API}.STREAM.MSG.DELETE.${n.heldStream}`,
          ...readStatus,
          // Dead letters: a large message's envelope is read back from the body store to be kept.
          ...readBodies,
          ...dropBody,
          ...keepFailed,
        ],
        subscribe,
      };
    case 'smtp-sender':
    case 'graph-sender': {
      const transport = kind === 'smtp-sender' ? 'smtp' : 'graph';
      const durable = n.senderConsumer(transport);
      const d = n.dispatchStream;
      return {
        publish: [
          ...common,
          n.statusWildcard,
          // Retries go back through the scheduler.
          n.submittedWildcard,
          // Its durable only, and only with its own transport's filter.
          `${API}.CONSUMER.CREATE.${d}.${durable}.${n.dispatchWildcard(transport)}`,
          `${API}.CONSUMER.INFO.${d}.${durable}`,
          `${API}.CONSUMER.MSG.NEXT.${d}.${durable}`,
          `$JS.ACK.${d}.${durable}.>`,
          ...readStatus,
          ...readBodies,
          // Removing a sent message's body; keeping a failed one's envelope.
          ...dropBody,
          ...keepFailed,
          ...(kind === 'smtp-sender' ? sentCopyRights(n) : []),
          // Delivery reports' hard bounces go in the suppression bucket.
          ...suppressedRights(n),
          // Delivery-report passes: which replica reads a folder next, and its cursor.
          ...reportReaderRights(n),
        ],
        subscribe,
      };
    }
    case 'credentials': {
      const kv = `KV_${secrets}`;
      return {
        publish: [
          ...common,
          `${API}.STREAM.INFO.${kv}`,
          `${API}.STREAM.CREATE.${kv}`,
          `$KV.${secrets}.>`,
          `${API}.STREAM.MSG.GET.${kv}`,
          `${API}.DIRECT.GET.${kv}`,
          `${API}.DIRECT.GET.${kv}.>`,
          `${API}.STREAM.PURGE.${kv}`,
          ...orderedConsumer(kv),
        ],
        subscribe,
      };
    }
  }
}

/**
 * Webhooks (ingest): the fan-out durable on the status stream, the webhooks stream with one
 * durable per endpoint (and the direct gets that keep a message's events in order), the log bucket.
 */
function webhookRights(n: ReturnType<typeof busNames>): string[] {
  const stream = n.webhooksStream;
  const log = `KV_${n.webhookLogBucket}`;
  return [
    `${API}.STREAM.INFO.${stream}`,
    `${API}.STREAM.CREATE.${stream}`,
    `${n.prefix}.webhook.>`,
    ...consumerRights(stream),
    `${API}.DIRECT.GET.${stream}`,
    `${API}.DIRECT.GET.${stream}.>`,
    ...durableRights(n.statusStream, n.webhooksFanoutConsumer),
    `${API}.CONSUMER.DELETE.${n.statusStream}.${n.webhooksFanoutConsumer}`,
    `${API}.STREAM.INFO.${log}`,
    `${API}.STREAM.CREATE.${log}`,
    `$KV.${n.webhookLogBucket}.>`,
    `${API}.STREAM.MSG.GET.${log}`,
    `${API}.DIRECT.GET.${log}`,
    `${API}.DIRECT.GET.${log}.>`,
    ...orderedConsumer(log),
  ];
}

/**
 * copy_to_sent (smtp-sender): the sent-copy stream and its durable, and a large copy's bytes in
 * the body store (written, read and removed).
 */
function sentCopyRights(n: ReturnType<typeof busNames>): string[] {
  const stream = n.sentCopyStream;
  return [
    `${API}.STREAM.INFO.${stream}`,
    `${API}.STREAM.CREATE.${stream}`,
    n.sentCopyWildcard,
    ...durableRights(stream, n.sentCopyConsumer),
    `$O.${n.bodyBucket}.>`,
    ...sentCopyStatusRights(n),
    `$KV.${n.sentCopiesBucket}.>`,
  ];
}

/** Where each copy to Sent stands (KV): made when missing and read (ingest); senders also put to it. */
function sentCopyStatusRights(n: ReturnType<typeof busNames>): string[] {
  const kv = `KV_${n.sentCopiesBucket}`;
  return [`${API}.STREAM.INFO.${kv}`, `${API}.STREAM.CREATE.${kv}`, `${API}.STREAM.MSG.GET.${kv}`, `${API}.DIRECT.GET.${kv}`, `${API}.DIRECT.GET.${kv}.>`];
}

/** The suppression bucket: made when missing, watched, put to (senders) and deleted from (ingest). */
function suppressedRights(n: ReturnType<typeof busNames>): string[] {
  const kv = `KV_${n.suppressedBucket}`;
  return [
    `${API}.STREAM.INFO.${kv}`,
    `${API}.STREAM.CREATE.${kv}`,
    `${API}.STREAM.MSG.GET.${kv}`,
    `${API}.DIRECT.GET.${kv}`,
    `${API}.DIRECT.GET.${kv}.>`,
    ...orderedConsumer(kv),
    `$KV.${n.suppressedBucket}.>`,
  ];
}

/** The report readers' bucket: made when missing, read and written with compare-and-set. */
function reportReaderRights(n: ReturnType<typeof busNames>): string[] {
  const kv = `KV_${n.reportReadersBucket}`;
  return [
    `${API}.STREAM.INFO.${kv}`,
    `${API}.STREAM.CREATE.${kv}`,
    `${API}.STREAM.MSG.GET.${kv}`,
    `${API}.DIRECT.GET.${kv}`,
    `${API}.DIRECT.GET.${kv}.>`,
    `$KV.${n.reportReadersBucket}.>`,
  ];
}

/** Durable consumers on `stream`: create, update, look up, list, delete, pull and ack. */
function consumerRights(stream: string): string[] {
  return [
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.>`,
    `${API}.CONSUMER.INFO.${stream}.>`,
    `${API}.CONSUMER.DELETE.${stream}.>`,
    `${API}.CONSUMER.LIST.${stream}`,
    `${API}.CONSUMER.NAMES.${stream}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.ACK.${stream}.>`,
  ];
}

/** One named durable consumer on `stream` (shared by a service's replicas): create, update, look up, pull and ack. */
function durableRights(stream: string, durable: string): string[] {
  return [
    `${API}.CONSUMER.CREATE.${stream}.${durable}`,
    `${API}.CONSUMER.CREATE.${stream}.${durable}.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.${durable}`,
    `${API}.CONSUMER.INFO.${stream}.${durable}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${durable}`,
    `$JS.ACK.${stream}.${durable}.>`,
  ];
}

/** Reading an object store: an object's info (last message of its meta subject) and its chunks. */
function readObjects(stream: string): string[] {
  return [`${API}.STREAM.MSG.GET.${stream}`, `${API}.DIRECT.GET.${stream}`, `${API}.DIRECT.GET.${stream}.>`, ...orderedConsumer(stream)];
}

/** The short-lived ordered consumers that read a bucket (object gets, key listings, watches). */
function orderedConsumer(stream: string): string[] {
  return [
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.INFO.${stream}.>`,
    `${API}.CONSUMER.DELETE.${stream}.>`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

export interface NatsUser {
  kind: ServiceKind | 'admin';
  /** The nkey seed (SU...) the service signs with; the server holds only the public key. */
  seed: string;
  publicKey: string;
}

export interface NatsAuthSetup {
  users: NatsUser[];
  /** The `authorization` block of a nats-server configuration. */
  authorization: { users: Array<{ nkey: string; permissions?: { publish: { allow: string[] }; subscribe: { allow: string[] } } }> };
}

/**
 * One nkey user per service kind with its permissions, and an `admin` user with every right
 * (operators: stream deletion, inspection). Seeds are new each call.
 */
export function createNatsAuth(prefix: string, existing: Partial<Record<NatsUser['kind'], string>> = {}): NatsAuthSetup {
  const kinds = [...SERVICE_KINDS, 'admin'] as const;
  const users = kinds.map((kind): NatsUser => {
    const kp = existing[kind] ? fromSeed(new TextEncoder().encode(existing[kind])) : createUser();
    return { kind, seed: new TextDecoder().decode(kp.getSeed()), publicKey: kp.getPublicKey() };
  });
  return {
    users,
    authorization: {
      users: users.map((u) => {
        if (u.kind === 'admin') return { nkey: u.publicKey };
        const p = servicePermissions(u.kind, prefix);
        return { nkey: u.publicKey, permissions: { publish: { allow: p.publish }, subscribe: { allow: p.subscribe } } };
      }),
    },
  };
}

export interface NatsServerConfigOptions {
  host: string;
  port: number;
  storeDir: string;
  auth: NatsAuthSetup;
  /** Server TLS (certificate, key and the CA clients' certificates chain to, when they must show one). */
  tls?: { certFile: string; keyFile: string; caFile?: string; verify?: boolean };
}

/** A nats-server configuration (JSON, which the server's format accepts) with JetStream and the users. */
export function natsServerConfig(o: NatsServerConfigOptions): string {
  const conf: Record<string, unknown> = {
    host: o.host,
    port: o.port,
    jetstream: { store_dir: o.storeDir },
    authorization: o.auth.authorization,
  };
  if (o.tls)
    conf.tls = {
      cert_file: o.tls.certFile,
      key_file: o.tls.keyFile,
      ...(o.tls.caFile ? { ca_file: o.tls.caFile } : {}),
      ...(o.tls.verify ? { verify: true } : {}),
    };
  return `${JSON.stringify(conf, null, 2)}\n`;
}

/**
 * The users alone, as a file a nats-server configuration includes (`include ./users.conf`): it
 * holds public keys and permissions only, no secret.
 */
export function natsUsersInclude(auth: NatsAuthSetup): string {
  return `# Campus Relay's NATS users: one nkey per service kind and an admin. Generated; public keys only.\nauthorization: ${JSON.stringify(auth.authorization, null, 2)}\n`;
}
