import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';
import type { Pool } from './transports.js';

/** A finished RFC 5322 message and its SMTP envelope (see buildRawMessage). */
export interface RawMail {
  /** `use8BitMime`: the message has 8-bit bytes, so MAIL FROM says BODY=8BITMIME where the server supports it. */
  envelope: { from: string; to: string[]; use8BitMime?: boolean };
  raw: Buffer;
  /** The Message-ID header's value, angle brackets included. */
  messageId: string;
}

/**
 * Sends a finished message as it is over the sender's pool (nodemailer's `raw` message: no MIME
 * tree is built, and dot-stuffing happens in the SMTP connection), with its own envelope.
 */
export function sendRaw(pool: Pool, mail: RawMail): Promise<SMTPPool.SentMessageInfo> {
  return pool.sendMail({ envelope: { ...mail.envelope, to: [...mail.envelope.to] }, raw: mail.raw, messageId: mail.messageId });
}
