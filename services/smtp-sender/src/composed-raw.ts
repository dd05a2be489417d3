import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import type { RawMail } from './send-raw.js';

/**
 * A message nodemailer composes (attachments, encoded words), finished into its bytes before it
 * is sent, so that exactly these bytes go to the server and to the Sent folder (copy_to_sent).
 * The composer is nodemailer's own (the one its transports use); Bcc stays in the envelope only.
 */
export async function composedRaw(message: Mail.Options): Promise<RawMail> {
  const node = new MailComposer(message).compile();
  const raw = await node.build();
  const envelope = node.getEnvelope();
  return {
    envelope: { from: envelope.from || '', to: [...envelope.to] },
    raw,
    messageId: node.messageId(),
  };
}
