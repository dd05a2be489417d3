import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Metadata } from '@grpc/grpc-js';
import { context } from '@opentelemetry/api';
import { indexRecipients, INDEX_BOUNDS, loadFailed, packEnvelope, readIndex, type Bus } from '@relay/bus';
import { describe, ErrorCode, RelayError } from '@relay/core';
import {
  CancelMessagesResponseSchema,
  EnvelopeSchema,
  ListMessagesResponseSchema,
  MessageState,
  MessageSummarySchema,
  RetryMessagesResponseSchema,
  type CancelMessagesRequest,
  type CancelMessagesResponse,
  type Envelope,
  type ListMessagesRequest,
  type ListMessagesResponse,
  type MessageRecord,
  type RetryMessagesRequest,
  type RetryMessagesResponse,
} from '@relay/proto';
import { requireAdmin, type Authenticator } from './auth.js';
import { storingIn } from './store-limits.js';

export interface AdminMessagesContext {
  bus: Bus;
  auth: Authenticator;
}

type Call<Req> = { metadata: Metadata; request: Req };

/** The filters ListMessages, RetryMessages and CancelMessages share; `subject` is ListMessages' only. */
type Filters = Pick<ListMessagesRequest, 'state' | 'sender' | 'client' | 'recipient' | 'since' | 'until'> & { subject?: string };

export const PAGE_SIZE = { default: 100, max: 1_000 };
/** Most messages one RetryMessages or CancelMessages call acts on. */
export const BULK_MAX = 10_000;
const ID = /^[A-Za-z0-9-]{1,64}$/;
/** Longest subject filter: the index keeps this much of a subject. */
export const SUBJECT_FILTER_MAX = INDEX_BOUNDS.subjectChars;

/** What the QUEUED event carries for the message index. */
export function indexSummary(env: Envelope): { client: string; subject: string; to: string[]; recipientCount: number } {
  return {
    client: env.client,
    subject: env.subject.slice(0, INDEX_BOUNDS.subjectChars),
    to: indexRecipients(env.to, env.cc, env.bcc),
    recipientCount: env.recipientCount,
  };
}

/** A message the store refused after its QUEUED event went out ends FAILED with the reason. */
export async function notStored(bus: Bus, env: Envelope, reason: string): Promise<void> {
  await bus
    .publishStatus({
      messageId: env.messageId,
      sender: env.sender,
      state: MessageState.FAILED,
      attempt: 0,
      detail: `not stored: ${reason}`,
      service: 'relay-ingest',
    })
    .catch(() => {});
}

/** AdminService's dead-letter calls: list what the relay knows of, send failed mail again, cancel queued mail. */
export function createAdminMessageHandlers(ctx: AdminMessagesContext) {
  const admin = (call: Call<unknown>) => requireAdmin(ctx.auth, call.metadata);

  async function index(): Promise<MessageRecord[]> {
    try {
      return await readIndex(ctx.bus);
    } catch (err) {
      throw new RelayError(ErrorCode.Unavailable, 'the message index is unavailable (broker unreachable); retry', { cause: err });
    }
  }

  /** The messages a retry or cancel acts on, with their newest status event (the truth; the index may lag). */
  async function targets(req: Filters & { messageIds: string[] }) {
    let ids: string[];
    if (req.messageIds.length > 0) {
      req.messageIds.forEach((id, i) => {
        if (!ID.test(id)) throw new RelayError(ErrorCode.InvalidArgument, `message_ids[${i}]: not a message id`);
      });
      if (req.messageIds.length > BULK_MAX) throw new RelayError(ErrorCode.InvalidArgument, `message_ids: at most ${BULK_MAX} per call`);
      ids = [...new Set(req.messageIds)];
    } else {
      const test = matcher(req);
      ids = (await index())
        .filter(test)
        .map((r) => r.messageId)
        .slice(0, BULK_MAX);
    }
    const out = [];
    for (const id of ids) {
      const last = await ctx.bus.lastStatus(id);
      if (last) out.push({ id, last });
    }
    return out;
  }

  return {
    async listMessages(call: Call<ListMessagesRequest>): Promise<ListMessagesResponse> {
      admin(call);
      const req = call.request;
      const size = req.pageSize === 0 ? PAGE_SIZE.default : req.pageSize;
      if (size > PAGE_SIZE.max) throw new RelayError(ErrorCode.InvalidArgument, `page_size: at most ${PAGE_SIZE.max}`);
      const after = req.pageToken ? decodeToken(req.pageToken) : undefined;
      const test = matcher(req);
      // Newest first: message ids are time-ordered (UUIDv7), so the cursor is the last id shown.
      const all = (await index()).filter((r) => test(r) && (after === undefined || r.messageId < after)).sort((a, b) => (a.messageId < b.messageId ? 1 : -1));
      const page = all.slice(0, size);
      return create(ListMessagesResponseSchema, {
        messages: page.map((r) =>
          create(MessageSummarySchema, {
            messageId: r.messageId,
            state: r.state,
            sender: r.sender,
            client: r.client,
            subject: r.subject,
            to: r.to,
            attempts: r.attempts,
            lastError: r.lastError,
            updatedAt: r.updatedAt,
          }),
        ),
        nextPageToken: all.length > size ? encodeToken(page.at(-1)!.messageId) : '',
      });
    },

    async retryMessages(call: Call<RetryMessagesRequest>): Promise<RetryMessagesResponse> {
      const client = admin(call);
      let count = 0;
      for (const { id, last } of await targets(call.request)) {
        if (last.state !== MessageState.FAILED) continue;
        const kept = await loadFailed(ctx.bus, id);
        if (!kept) continue; // its retention ended, or it never reached the relay's store
        // A new attempt number: never one whose hops the broker may still remember as duplicates.
        const attempt = Math.max(2, last.attempt + 1);
        // Held mail expires counting from not_before too, so an old message retried gets its full time.
        const env = create(EnvelopeSchema, { ...kept.env, attempt, notBefore: timestampFromDate(new Date()), bodyRef: '', firstAttemptAt: undefined });
        await context.with(kept.trace, async () => {
          const packed = await storingIn(ctx.bus, 'bodies', () => packEnvelope(ctx.bus, env));
          await ctx.bus.publishStatus({
            messageId: id,
            sender: env.sender,
            state: MessageState.QUEUED,
            attempt,
            detail: `retried by ${client.name}`,
            service: 'relay-ingest',
          });
          // Its Nats-Msg-Id is the attempt's: retrying twice stores it once. Not stored: FAILED
          // again, so it stays listed and can be retried.
          await storingIn(ctx.bus, 'submitted', () =>
            ctx.bus.publishEnvelope(ctx.bus.names.submittedSubject(env.sender), packed, `${id}.${attempt}.submit`),
          ).catch(async (err: unknown) => {
            await ctx.bus
              .publishStatus({
                messageId: id,
                sender: env.sender,
                state: MessageState.FAILED,
                attempt,
                detail: `retry not stored: ${describe(err)}`,
                service: 'relay-ingest',
              })
              .catch(() => {});
            throw err;
          });
        });
        count++;
      }
      return create(RetryMessagesResponseSchema, { count });
    },

    async cancelMessages(call: Call<CancelMessagesRequest>): Promise<CancelMessagesResponse> {
      const client = admin(call);
      let count = 0;
      for (const { id, last } of await targets(call.request)) {
        if (last.state !== MessageState.QUEUED && last.state !== MessageState.RETRYING) continue;
        // The scheduler and the senders check for FAILED before they hand on or send a message. A
        // RETRYING message's next attempt is already parked: the cancel is recorded at that attempt,
        // so a later RetryMessages gets a number of its own.
        const attempt = last.state === MessageState.RETRYING ? last.attempt + 1 : last.attempt;
        await ctx.bus.publishStatus({
          messageId: id,
          sender: last.sender,
          state: MessageState.FAILED,
          attempt,
          detail: `cancelled by ${client.name}`,
          service: 'relay-ingest',
        });
        count++;
      }
      return create(CancelMessagesResponseSchema, { count });
    },
  };
}

/**
 * A predicate for the shared filters; `since` and `until` bound the time of the latest state
 * change, `subject` is a part of the subject in any case. A bad filter is an INVALID_ARGUMENT.
 */
export function matcher(f: Filters): (r: MessageRecord) => boolean {
  const since = f.since ? timestampDate(f.since).getTime() : undefined;
  const until = f.until ? timestampDate(f.until).getTime() : undefined;
  const recipient = f.recipient.trim().toLowerCase();
  const subjectText = (f.subject ?? '').trim();
  if ([...subjectText].length > SUBJECT_FILTER_MAX) throw new RelayError(ErrorCode.InvalidArgument, `subject: at most ${SUBJECT_FILTER_MAX} characters`);
  const subject = subjectText.toLowerCase();
  return (r) => {
    if (f.state !== MessageState.UNSPECIFIED && r.state !== f.state) return false;
    if (f.sender && r.sender !== f.sender) return false;
    if (f.client && r.client !== f.client) return false;
    if (recipient && !r.to.some((a) => a.toLowerCase() === recipient || a.toLowerCase().endsWith(`<${recipient}>`))) return false;
    if (subject && !r.subject.toLowerCase().includes(subject)) return false;
    const at = r.updatedAt ? timestampDate(r.updatedAt).getTime() : 0;
    if (since !== undefined && at < since) return false;
    if (until !== undefined && at >= until) return false;
    return true;
  };
}

function encodeToken(id: string): string {
  return Buffer.from(`m:${id}`).toString('base64url');
}

function decodeToken(token: string): string {
  const s = Buffer.from(token, 'base64url').toString();
  if (!s.startsWith('m:') || !ID.test(s.slice(2))) throw new RelayError(ErrorCode.InvalidArgument, 'page_token: not a token from a previous ListMessages');
  return s.slice(2);
}
