import { timestampDate } from '@bufbuild/protobuf/wkt';
import type Mail from 'nodemailer/lib/mailer/index.js';
import type { SenderConfig } from '@relay/config';
import type { Envelope } from '@relay/proto';

/**
 * The nodemailer message for an envelope: From and default Reply-To come from the sender.
 * `trace` (a `traceparent` header) replaces any trace header the caller put in.
 */
export function buildMessage(env: Envelope, sender: SenderConfig, trace: Record<string, string> = {}): Mail.Options {
  const fromDomain = sender.from.replace(/^.*@/, '').replace(/>.*$/, '');
  return {
    from: sender.from,
    to: env.to,
    cc: env.cc,
    bcc: env.bcc,
    replyTo: env.replyTo || sender.replyTo || undefined,
    subject: env.subject,
    ...(env.text ? { text: env.text } : {}),
    ...(env.html ? { html: env.html } : {}),
    attachments: env.attachments.map((a) => ({
      filename: a.filename,
      content: Buffer.from(a.content.buffer, a.content.byteOffset, a.content.byteLength),
      ...(a.contentType ? { contentType: a.contentType } : {}),
    })),
    headers: { ...withoutTraceHeaders(env.headers, trace), ...trace, 'X-Relay-Message-Id': env.messageId },
    messageId: `<${env.messageId}@${fromDomain}>`,
    ...(env.submittedAt ? { date: timestampDate(env.submittedAt) } : {}),
  };
}

/** The caller's headers without those `trace` sets (compared case-insensitively). */
export function withoutTraceHeaders(headers: Record<string, string>, trace: Record<string, string>): Record<string, string> {
  const ours = new Set(Object.keys(trace).map((k) => k.toLowerCase()));
  if (ours.size === 0) return headers;
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !ours.has(k.toLowerCase())));
}
