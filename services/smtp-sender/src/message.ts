import { timestampDate } from '@bufbuild/protobuf/wkt';
import type Mail from 'nodemailer/lib/mailer/index.js';
import type { SenderConfig } from '@relay/config';
import type { Envelope } from '@relay/proto';

/** The nodemailer message for an envelope: From and default Reply-To come from the sender. */
export function buildMessage(env: Envelope, sender: SenderConfig): Mail.Options {
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
    headers: { ...env.headers, 'X-Relay-Message-Id': env.messageId },
    messageId: `<${env.messageId}@${fromDomain}>`,
    ...(env.submittedAt ? { date: timestampDate(env.submittedAt) } : {}),
  };
}
