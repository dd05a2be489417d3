import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { listSome } from '@relay/bus';
import { activeTraceparent } from '@relay/telemetry';
import type { SenderConfig } from '@relay/config';
import { retryable } from '@relay/core';
import type { Envelope } from '@relay/proto';
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';
import { type AuthCache, SmtpAuthKind } from './auth-cache.js';
import { classifySmtpError, classifySmtpFailure, type SmtpErrorLike } from './classify.js';
import { buildMessage } from './message.js';
import { composedRaw } from './composed-raw.js';
import { buildRawMessage } from './raw-message.js';
import { sendRaw, type RawMail } from './send-raw.js';
import { submittedMail } from './submitted-mime.js';
import type { TransportPool } from './transports.js';

export interface SmtpDeliverer {
  deliver(env: Envelope): Promise<string>;
}

/**
 * What happens once the provider accepted a message of a copy_to_sent sender, with the bytes it
 * was sent as: must not throw (the message is sent; nothing may make it go again).
 */
export type OnSent = (env: Envelope, sender: SenderConfig, mail: RawMail) => Promise<void>;

/** Sends one envelope over its sender's pooled SMTP transport; returns the server's reply. */
export function createSmtpDeliverer(senders: () => Map<string, SenderConfig>, auth: AuthCache, pools: TransportPool, onSent?: OnSent): SmtpDeliverer {
  async function attempt(env: Envelope, sender: SenderConfig, tokenRejected: boolean): Promise<{ reply: string; raw: RawMail | undefined }> {
    const creds = await auth.get(sender.id, { tokenRejected });
    const pool = pools.get(sender, creds);
    const smtp = sender.smtp!;
    // The SMTP exchange as a CLIENT span; the message carries its context in a traceparent header
    // so the provider's logs can be matched with the trace.
    return tracer().startActiveSpan(
      'smtp send',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'server.address': smtp.host,
          'server.port': smtp.port,
          'relay.smtp.security': smtp.security,
          'relay.message.id': env.messageId,
          'relay.sender': sender.id,
        },
      },
      async (span) => {
        try {
          const headers = traceHeaders();
          // A copy_to_sent sender's message is always finished into bytes first: those bytes are the copy.
          const raw =
            submittedMail(env, headers) ??
            buildRawMessage(env, sender, headers) ??
            (sender.sentCopy ? await composedRaw(buildMessage(env, sender, headers)) : undefined);
          const reply = describeInfo(await (raw ? sendRaw(pool, raw) : pool.sendMail(buildMessage(env, sender, headers))));
          span.setAttribute('relay.smtp.reply', reply);
          return { reply, raw };
        } catch (err) {
          const e = err as SmtpErrorLike;
          span.setStatus({ code: SpanStatusCode.ERROR, message: classifySmtpError(e).message });
          // A refused access token gets one refresh and one more try before it counts as an answer.
          if (creds.kind === SmtpAuthKind.XOAUTH2 && e.code === 'EAUTH' && !tokenRejected) return attempt(env, sender, true);
          throw await classifySmtpFailure(e, smtp);
        } finally {
          span.end();
        }
      },
    );
  }
  return {
    async deliver(env) {
      const sender = senders().get(env.sender);
      if (!sender?.smtp)
        throw retryable(`sender "${env.sender}" is not configured for SMTP in this smtp-sender; the message waits for a configuration that has it`);
      const { reply, raw } = await attempt(env, sender, false);
      if (raw && sender.sentCopy && onSent) await onSent(env, sender, raw);
      return reply;
    },
  };
}

const tracer = () => trace.getTracer('campus-relay');

/** `traceparent` of the active span, for the outgoing message's header; empty when not tracing. */
export function traceHeaders(): Record<string, string> {
  const traceparent = activeTraceparent();
  return traceparent ? { traceparent } : {};
}

/** The server's reply, naming the first refused recipients and counting the rest. */
export function describeInfo(info: Pick<SMTPPool.SentMessageInfo, 'response' | 'rejected'>): string {
  const reply = (info.response ?? '').trim() || '250 accepted';
  const rejected = (info.rejected ?? []).map((r: string | { address: string }) => (typeof r === 'string' ? r : r.address));
  return rejected.length ? `${reply}; ${rejected.length} refused recipients: ${listSome(rejected)}` : reply;
}
