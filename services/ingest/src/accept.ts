import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { isSpanContextValid, trace, TraceFlags } from '@opentelemetry/api';
import { packEnvelope, signEnvelope } from '@relay/bus';
import type { ClientConfig, SenderConfig } from '@relay/config';
import { ErrorCode, RelayError, isRelayError, uuidv7 } from '@relay/core';
import { EnvelopeSchema, MessageState, type Envelope } from '@relay/proto';
import { relayInstruments } from '@relay/telemetry';
import { indexSummary, notStored } from './admin-messages.js';
import { claim, markStored } from './idempotency.js';
import type { IngestContext } from './mail-service.js';
import { storingIn } from './store-limits.js';

/** Which front door a message came in by (the `door` attribute of relay_messages_accepted). */
export type Door = 'grpc' | 'smtp';

export interface AcceptRequest {
  client: ClientConfig;
  sender: SenderConfig;
  door: Door;
  /** The message's fields; id, sender, client, submission time and attempt are filled in here. */
  message: Omit<Partial<Envelope>, '$typeName' | 'messageId' | 'sender' | 'client' | 'submittedAt' | 'attempt'>;
  /** A repeat with the same key and fingerprint answers with the first message's id. */
  idempotency?: { key: string; fingerprint: string };
  /** Added to the QUEUED event's detail, e.g. a suppressed recipient accepted under suppression.mode flag. */
  note?: string;
}

export interface Accepted {
  messageId: string;
  state: MessageState;
}

/**
 * Stores a message in JetStream (its QUEUED status first, the body in the body store when it does
 * not fit in one broker message) and returns its id only once the broker has it. Every front door
 * goes through here, so "accepted" means the same thing whichever door a client used.
 */
export async function acceptMessage(ctx: IngestContext, req: AcceptRequest): Promise<Accepted> {
  const { client, sender } = req;
  return storing(async () => {
    let messageId = uuidv7();
    let recordKey: string | undefined;
    if (req.idempotency) {
      const { key, fingerprint } = req.idempotency;
      const c = await storingIn(ctx.bus, 'idempotency', () => claim(ctx.bus.idempotency, client.name, key, fingerprint, messageId));
      if (c.kind === 'done') return await answerRepeat(ctx, c.messageId);
      messageId = c.messageId;
      recordKey = c.key;
    }
    const sendAtMs = req.message.sendAt ? Number(req.message.sendAt.seconds) * 1000 : undefined;
    await ctx.budget?.charge(client, { messageId, sizeBytes: Number(req.message.sizeBytes ?? 0n), recipients: req.message.recipientCount ?? 0, sendAtMs });
    const now = new Date();
    const env = create(EnvelopeSchema, {
      ...req.message,
      messageId,
      sender: sender.id,
      client: client.name,
      submittedAt: timestampFromDate(now),
      attempt: 1,
    });
    // On the door's server span (a child of the caller's traceparent, if it sent one).
    const span = trace.getActiveSpan();
    span?.setAttributes({ 'relay.message.id': messageId, 'relay.sender': sender.id, 'relay.client': client.name });
    // The trace the message keeps to the provider's answer, retries included: GetMessage names it,
    // when it is recorded (sampled) and so can be found in the tracing backend.
    const sc = span?.spanContext();
    const traceId = sc && isSpanContextValid(sc) && (sc.traceFlags & TraceFlags.SAMPLED) !== 0 ? sc.traceId : '';
    try {
      const packed = await storingIn(ctx.bus, 'bodies', () => packEnvelope(ctx.bus, signEnvelope(ctx.envelopeKey, env)));
      // QUEUED goes out first on the same connection, so it is stored before the message is,
      // and before anything a downstream service can say about it. It names the client
      // (GetMessage checks it) and carries the message index's summary (ListMessages).
      ctx.bus.noteStatus({
        messageId,
        sender: sender.id,
        state: MessageState.QUEUED,
        attempt: 0,
        detail: req.note ? `accepted; ${req.note}` : 'accepted',
        service: 'relay-ingest',
        at: now,
        traceId,
        ...indexSummary(env),
      });
      await storingIn(ctx.bus, 'submitted', () => ctx.bus.publishEnvelope(ctx.bus.names.submittedSubject(sender.id), packed, `${messageId}.submit`)).catch(
        async (err: unknown) => {
          if (isRelayError(err)) await notStored(ctx.bus, env, err.message);
          throw err;
        },
      );
    } catch (err) {
      await ctx.budget?.release(messageId);
      throw err;
    }
    if (recordKey) await markStored(ctx.bus.idempotency, recordKey, messageId, req.idempotency!.fingerprint);
    relayInstruments().accepted.add(1, { sender: sender.id, door: req.door });
    ctx.logger.debug(
      { message_id: messageId, sender: sender.id, client: client.name, door: req.door, recipients: env.recipientCount, size: Number(env.sizeBytes) },
      'accepted',
    );
    return { messageId, state: MessageState.QUEUED };
  });
}

async function answerRepeat(ctx: IngestContext, messageId: string): Promise<Accepted> {
  const events = await ctx.bus.history(messageId);
  return { messageId, state: events.at(-1)?.state ?? MessageState.QUEUED };
}

/** Anything but a RelayError while storing means the broker did not take the message. */
async function storing<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isRelayError(err)) throw err;
    throw new RelayError(ErrorCode.Unavailable, 'the message was not stored (message broker unavailable); it is safe to retry with the same idempotency_key', {
      cause: err,
    });
  }
}
