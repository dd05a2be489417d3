import type { JsMsg } from '@nats-io/jetstream';
import { getSentCopyStatus, openSentCopyBucket, putSentCopyStatus, workDurable, type Bus, type ConsumeLoop, type SentCopyUpdate } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import { backoffMs, describe, InFlight, within } from '@relay/core';
import { GetSmtpAuthResponse_Kind as Kind, SentCopyState } from '@relay/proto';
import type { AuthCache } from '../auth-cache.js';
import { appendToSent, describeImapError, type AppendOptions, type ImapLogin } from './imap.js';
import { ensureSentCopyStream, SENT_COPY_HEADER, SENT_COPY_MAX_AGE_MS } from './job.js';
import { sentCopies } from './metrics.js';

export interface SentCopyWorkerOptions {
  bus: Bus;
  senders: () => Map<string, SenderConfig>;
  auth: Pick<AuthCache, 'get'>;
  retryInitialMs: number;
  retryMaxMs: number;
  /** Copies appended at once by this replica. */
  concurrency?: number;
  ackWaitMs?: number;
  timeoutMs?: number;
  /** How long a copy is tried before it is given up; SENT_COPY_MAX_AGE_MS unless a test shortens it. */
  maxAgeMs?: number;
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

export interface SentCopyWorker {
  start(): Promise<void>;
  stop(graceMs: number): Promise<void>;
}

/**
 * Appends sent messages to their mailbox's Sent folder (copy_to_sent), from the sent-copy work
 * queue that smtp-sender replicas share. A failed append is given back with a delay (exponential
 * up to retryMaxMs) and tried again for SENT_COPY_MAX_AGE_MS; the message itself stays SENT and
 * is never sent again for it. Each outcome is recorded where GetMessage reads it (sent-copy-status).
 */
export function createSentCopyWorker(o: SentCopyWorkerOptions): SentCopyWorker {
  const { bus } = o;
  const inFlight = new InFlight();
  let loop: ConsumeLoop | undefined;
  // A token the IMAP server refused is asked for again (refreshed) on the next attempt.
  const tokenRejected = new Set<string>();
  const maxAgeMs = o.maxAgeMs ?? SENT_COPY_MAX_AGE_MS;

  // What GetMessage shows of the copy. Best effort: the copy itself does not wait on it or fail with it.
  async function record(messageId: string, u: SentCopyUpdate) {
    await putSentCopyStatus(bus, messageId, u).catch((err: unknown) =>
      o.log.warn({ message_id: messageId, err: describe(err) }, 'could not record where the copy to the Sent folder stands'),
    );
  }

  async function handle(m: JsMsg) {
    const messageId = m.headers?.get(SENT_COPY_HEADER.messageId) ?? '';
    const senderId = m.headers?.get(SENT_COPY_HEADER.sender) ?? '';
    const bodyRef = m.headers?.get(SENT_COPY_HEADER.bodyRef) || undefined;
    const where = { message_id: messageId, sender: senderId };
    const sender = o.senders().get(senderId);
    const done = async () => {
      await m.ackAck().catch(() => {});
      if (bodyRef) await bus.bodies.delete(bodyRef).catch(() => {});
    };
    if (!messageId || !sender?.sentCopy) {
      o.log.warn(where, 'copy for the Sent folder dropped: the sender no longer has copy_to_sent');
      if (messageId) {
        await record(messageId, {
          state: SentCopyState.GAVE_UP,
          attempts: m.info.deliveryCount - 1,
          lastError: `sender "${senderId}" no longer has copy_to_sent`,
        });
      }
      await done();
      return;
    }
    const queuedAt = Number(m.info.timestampNanos / 1_000_000);
    if (Date.now() - queuedAt > maxAgeMs) {
      sentCopies().add(1, { sender: senderId, outcome: 'given_up' });
      o.log.error({ ...where, attempts: m.info.deliveryCount - 1 }, 'gave up copying the sent message to the Sent folder');
      // The last failed try's answer stays the reason shown.
      const before = await getSentCopyStatus(bus, messageId).catch(() => undefined);
      await record(messageId, {
        state: SentCopyState.GAVE_UP,
        attempts: m.info.deliveryCount - 1,
        lastError: before?.lastError || `not copied within ${Math.round(maxAgeMs / 3_600_000)} h`,
      });
      await done();
      return;
    }
    try {
      const raw = bodyRef ? await readStored(bodyRef) : Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      const login = await loginFor(senderId);
      // IMAP SINCE compares dates only: a day before the job covers any time zone.
      const opts: AppendOptions = { relayMessageId: messageId, since: new Date(queuedAt - 86_400_000), ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) };
      const { outcome, folder } = await appendToSent(sender.sentCopy.imap, login, raw, opts);
      tokenRejected.delete(senderId);
      sentCopies().add(1, { sender: senderId, outcome });
      o.log.info(
        { ...where, outcome, folder, imap: sender.sentCopy.imap.host },
        outcome === 'appended' ? 'copied to the Sent folder' : 'already in the Sent folder',
      );
      await record(messageId, { state: SentCopyState.COPIED, folder, attempts: m.info.deliveryCount });
      await done();
    } catch (err) {
      if ((err as { authenticationFailed?: boolean }).authenticationFailed) tokenRejected.add(senderId);
      const wait = backoffMs(m.info.deliveryCount, o.retryInitialMs, o.retryMaxMs);
      sentCopies().add(1, { sender: senderId, outcome: 'failed' });
      o.log.warn(
        {
          ...where,
          attempt: m.info.deliveryCount,
          retry_in_ms: wait,
          imap: `${sender.sentCopy.imap.host}:${sender.sentCopy.imap.port}`,
          error: describeImapError(err),
        },
        'could not copy the sent message to the Sent folder; will try again (the message is not sent again)',
      );
      await record(messageId, { state: SentCopyState.RETRYING, attempts: m.info.deliveryCount, lastError: describeImapError(err) });
      m.nak(wait);
    }
  }

  async function loginFor(sender: string): Promise<ImapLogin> {
    const creds = await o.auth.get(sender, { tokenRejected: tokenRejected.has(sender) });
    if (creds.kind === Kind.PASSWORD) return { user: creds.user, pass: creds.password };
    // The credentials service knows the token lacks IMAP's scope: say what to do, not just that IMAP refused.
    if (creds.kind === Kind.XOAUTH2 && creds.imapRefusal) {
      // Asked for anew next time: after a new sign-in the credentials service hands out a token that has it.
      tokenRejected.add(sender);
      throw new Error(creds.imapRefusal);
    }
    if (creds.kind === Kind.XOAUTH2) return { user: creds.user, accessToken: creds.accessToken };
    throw new Error(`sender "${sender}" has no SMTP credentials to sign in to IMAP with`);
  }

  async function readStored(ref: string): Promise<Buffer> {
    const bytes = await bus.bodies.getBlob(ref);
    if (!bytes) throw new Error(`the stored copy ${ref} is missing from the body store`);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  return {
    async start() {
      await ensureSentCopyStream(bus);
      await openSentCopyBucket(bus);
      const concurrency = o.concurrency ?? 4;
      loop = await workDurable(
        bus,
        {
          stream: bus.names.sentCopyStream,
          durable: bus.names.sentCopyConsumer,
          filterSubject: bus.names.sentCopyWildcard,
          ackWaitMs: o.ackWaitMs ?? 120_000,
          maxAckPending: 1_000,
          concurrency,
          inFlight,
        },
        (m) =>
          handle(m).catch((err: unknown) => {
            o.log.warn({ err: describe(err), seq: m.seq }, 'could not settle a copy for the Sent folder; it will come again');
            try {
              m.nak(o.retryInitialMs);
            } catch {
              // The connection is gone: the ack wait hands it out again.
            }
          }),
        o.log,
      );
    },
    async stop(graceMs) {
      loop?.stop();
      await within(inFlight.idle(), graceMs);
      if (loop) await within(loop.done, 5_000);
    },
  };
}
