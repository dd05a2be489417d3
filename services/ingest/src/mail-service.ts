import { create } from '@bufbuild/protobuf';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { getSentCopyStatus, type Bus } from '@relay/bus';
import { recipientRefusal, type RelayConfig, type SenderConfig } from '@relay/config';
import { describe, ErrorCode, RelayError } from '@relay/core';
import { validateSendMail } from '@relay/mail';
import {
  MessageState,
  SendMailResponseSchema,
  type GetMessageRequest,
  type GetMessageResponse,
  type SendMailRequest,
  type SendMailResponse,
} from '@relay/proto';
import type { Logger } from '@relay/telemetry';
import { acceptMessage } from './accept.js';
import type { Authenticator } from './auth.js';
import type { ClientBudget } from './client-budget.js';
import { foldHistory } from './history.js';
import { fingerprint } from './idempotency.js';
import { checkSuppression, type SuppressionLookup } from './suppression-check.js';

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
  /** Recipients that hard-bounced (the suppression bucket, watched); absent: no client's suppression applies. */
  suppressions?: SuppressionLookup | undefined;
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
        recipientRefusal: (address) => recipientRefusal(sender, address),
      });
      const note = checkSuppression(ctx.suppressions, client, req, ctx.bus.names.suppressedBucket);

      const accepted = await acceptMessage(ctx, {
        client,
        sender,
        door: 'grpc',
        ...(note ? { note } : {}),
        message: {
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
          recipientCount: recipients,
          sizeBytes: BigInt(size),
        },
        ...(req.idempotencyKey ? { idempotency: { key: req.idempotencyKey, fingerprint: fingerprint(req) } } : {}),
      });
      if (note) ctx.logger.warn({ message_id: accepted.messageId, client: client.name, sender: sender.id }, `accepted with ${note} (suppression.mode: flag)`);
      return create(SendMailResponseSchema, accepted);
    },

    async getMessage(call: Call<GetMessageRequest>): Promise<GetMessageResponse> {
      const client = ctx.auth.authenticate(call.metadata);
      const id = call.request.messageId;
      if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new RelayError(ErrorCode.InvalidArgument, 'message_id: not a message id');
      const events = await ctx.bus.history(id).catch((err: unknown) => {
        throw new RelayError(ErrorCode.Unavailable, 'message status is unavailable (broker unreachable); retry', { cause: err });
      });
      // Another client's message is reported as unknown, so ids cannot be probed; the client is
      // the one ingest's QUEUED event (or an outcome) names: sharing a sender shares no messages.
      const owner = events.find((e) => e.client)?.client;
      if (events.length === 0 || (!client.admin && owner !== client.name)) {
        throw new RelayError(ErrorCode.NotFound, `message_id: no message ${id}`);
      }
      const res = foldHistory(id, events);
      // Only mail the provider accepted has a copy to Sent (copy_to_sent); its record is kept apart
      // from the status events. Without it the status is still worth answering with.
      if (events.some((e) => e.state === MessageState.SENT)) {
        const copy = await getSentCopyStatus(ctx.bus, id).catch((err: unknown) => {
          ctx.logger.warn({ message_id: id, err: describe(err) }, 'could not read where the copy to the Sent folder stands');
          return undefined;
        });
        if (copy) res.sentCopy = copy;
      }
      return res;
    },
  };
}

/**
 * The size limit for a sender's messages: its own (`rate.max_message_bytes`, or its preset's, e.g.
 * 150 MB for Microsoft Graph) where it has one, else the relay-wide `limits.max_message_bytes`.
 */
export function messageLimit(config: RelayConfig, sender: SenderConfig): number {
  return sender.rate?.maxMessageBytes ?? config.limits.maxMessageBytes;
}
