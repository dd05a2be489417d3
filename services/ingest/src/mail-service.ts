import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { packEnvelope, signEnvelope, type Bus } from '@relay/bus';
import type { RelayConfig, SenderConfig } from '@relay/config';
import { ErrorCode, RelayError, isRelayError, uuidv7 } from '@relay/core';
import { validateSendMail } from '@relay/mail';
import {
  EnvelopeSchema,
  MessageState,
  SendMailResponseSchema,
  type Envelope,
  type GetMessageRequest,
  type GetMessageResponse,
  type SendMailRequest,
  type SendMailResponse,
} from '@relay/proto';
import { relayInstruments, type Logger } from '@relay/telemetry';
import type { Authenticator } from './auth.js';
import type { ClientBudget } from './client-budget.js';
import { foldHistory } from './history.js';
import { claim, markStored } from './idempotency.js';
import { indexSummary, notStored } from './admin-messages.js';
import { storingIn } from './store-limits.js';

export interface IngestContext {
  config: RelayConfig;
  senders: Map<string, SenderConfig>;
  bus: Bus;
  auth: Authenticator;
  /** Per-client rate limits and quotas; absent when no client has any. */
  budget?: ClientBudget | undefined;
  logger: Logger;
  /** Signs every envelope accepted here; senders refuse any envelope without this signature. */
  envelopeKey: Buffer;
}

type Call<Req> = Pick<ServerUnaryCall<Req, unknown>, 'metadata' | 'request'>;

export function createMailHandlers(ctx: IngestContext) {
  return {
    async sendMail(call: Call<SendMailRequest>): Promise<SendMailResponse> {
      const req = call.request;
      const client = ctx.auth.authenticate(call.metadata);
      ctx.auth.authorizeSender(client, req.sender);
      const sender = ctx.senders.get(req.sender);
      if (!sender) throw new RelayError(ErrorCode.PermissionDenied, `sender "${req.sender}" is not configured`);
      const { recipients, size } = validateSendMail(req, {
        maxMessageBytes: messageLimit(ctx.config, sender),
        maxRecipientsPerMessage: sender.rate?.maxRecipientsPerMessage,
      });

      return storing(async () => {
        let messageId = uuidv7();
        let recordKey: string | undefined;
        if (req.idempotencyKey) {
          const c = await storingIn(ctx.bus, 'idempotency', () => claim(ctx.bus.idempotency, client.name, req, messageId));
          if (c.kind === 'done') return await answerRepeat(ctx, c.messageId);
          messageId = c.messageId;
          recordKey = c.key;
        }
        const sendAtMs = req.sendAt ? Number(req.sendAt.seconds) * 1000 : undefined;
        await ctx.budget?.charge(client, { messageId, sizeBytes: size, recipients, sendAtMs });
        const now = new Date();
        const env = create(EnvelopeSchema, {
          messageId,
          sender: sender.id,
          client: client.name,
          to: req.to,
          cc: req.cc,
          bcc: req.bcc,
          replyTo: req.replyTo,
          subject: req.subject,
          text: req.text,
          html: req.html,
          attachments: req.attachments,
          headers: req.headers,
          sendAt: req.sendAt,
          submittedAt: timestampFromDate(now),
          attempt: 1,
          recipientCount: recipients,
          sizeBytes: BigInt(size),
        });
        // On the SendMail server span (a child of the caller's traceparent, if it sent one).
        trace.getActiveSpan()?.setAttributes({ 'relay.message.id': messageId, 'relay.sender': sender.id, 'relay.client': client.name });
        let packed: Envelope;
        try {
          packed = await storingIn(ctx.bus, 'bodies', () => packEnvelope(ctx.bus, signEnvelope(ctx.envelopeKey, env)));
          // QUEUED goes out first on the same connection, so it is stored before the message is,
          // and before anything a downstream service can say about it. It names the client
          // (GetMessage checks it) and carries the message index's summary (ListMessages).
          ctx.bus.noteStatus({ messageId, sender: sender.id, state: MessageState.QUEUED, attempt: 0, detail: 'accepted', service: 'relay-ingest', at: now, ...indexSummary(env) });
          await storingIn(ctx.bus, 'submitted', () => ctx.bus.publishEnvelope(ctx.bus.names.submittedSubject(sender.id), packed, `${messageId}.submit`)).catch(async (err: unknown) => {
            if (isRelayError(err)) await notStored(ctx.bus, env, err.message);
            throw err;
          });
        } catch (err) {
          await ctx.budget?.release(messageId);
          throw err;
        }
        if (recordKey) await markStored(ctx.bus.idempotency, recordKey, messageId, req);
        relayInstruments().accepted.add(1, { sender: sender.id });
        ctx.logger.debug({ message_id: messageId, sender: sender.id, client: client.name, recipients, size }, 'accepted');
        return create(SendMailResponseSchema, { messageId, state: MessageState.QUEUED });
      });
    },

    async getMessage(call: Call<GetMessageRequest>): Promise<GetMessageResponse> {
      const client = ctx.auth.authenticate(call.metadata);
      const id = call.request.messageId;
      if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new RelayError(ErrorCode.InvalidArgument, 'message_id: not a message id');
      const events = await ctx.bus.history(id).catch((err: unknown) => {
        throw new RelayError(ErrorCode.Unavailable, 'message status is unavailable (broker unreachable); retry', { cause: err });
      });
      // Another client's message is reported as unknown, so ids cannot be probed; the client is
      // the one on ingest's first event (sharing a sender does not share its messages).
      if (events.length === 0 || (!client.admin && events[0]!.client !== client.name)) {
        throw new RelayError(ErrorCode.NotFound, `message_id: no message ${id}`);
      }
      return foldHistory(id, events);
    },
  };
}

async function answerRepeat(ctx: IngestContext, messageId: string): Promise<SendMailResponse> {
  const events = await ctx.bus.history(messageId);
  const state = events.at(-1)?.state ?? MessageState.QUEUED;
  return create(SendMailResponseSchema, { messageId, state });
}

/** Anything but a RelayError while storing means the broker did not take the message. */
async function storing<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isRelayError(err)) throw err;
    throw new RelayError(ErrorCode.Unavailable, 'the message was not stored (message broker unavailable); it is safe to retry with the same idempotency_key', { cause: err });
  }
}

/**
 * The size limit for a sender's messages: its own (`rate.max_message_bytes`, or its preset's, e.g.
 * 150 MB for Microsoft Graph) where it has one, else the relay-wide `limits.max_message_bytes`.
 */
export function messageLimit(config: RelayConfig, sender: SenderConfig): number {
  return sender.rate?.maxMessageBytes ?? config.limits.maxMessageBytes;
}
