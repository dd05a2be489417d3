import { RelayError, ErrorCode } from '@relay/core';
import type { SendMailRequest } from '@relay/proto';
import { parseAddress } from './address.js';

export interface MessageLimits {
  maxMessageBytes: number;
  maxRecipientsPerMessage?: number | undefined;
  /** How far ahead send_at may be. */
  maxScheduleAheadMs?: number;
}

export const MAX_SCHEDULE_AHEAD_MS = 30 * 86_400_000;
const MAX_IDEMPOTENCY_KEY = 256;

/** Headers the relay sets itself from the request fields and the sender's configuration. */
const RESERVED_HEADERS = new Set(
  ['from', 'to', 'cc', 'bcc', 'subject', 'reply-to', 'sender', 'date', 'message-id', 'mime-version', 'content-type', 'content-transfer-encoding', 'return-path'],
);
const FIELD_NAME = /^[!-9;-~]+$/; // printable US-ASCII except ":" (RFC 5322 3.6.8)
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(?:\s*;.*)?$/;

function invalid(field: string, reason: string): RelayError {
  return new RelayError(ErrorCode.InvalidArgument, `${field}: ${reason}`);
}

/** The message's size as the relay counts it against the limit: bodies, attachments, headers. */
export function messageSize(req: SendMailRequest): number {
  let n = Buffer.byteLength(req.subject) + Buffer.byteLength(req.text) + Buffer.byteLength(req.html);
  for (const a of req.attachments) n += a.content.byteLength + Buffer.byteLength(a.filename);
  for (const [k, v] of Object.entries(req.headers)) n += Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

/**
 * Checks a SendMail request; throws INVALID_ARGUMENT naming the first bad field.
 * Returns the recipient count and size for routing and pacing.
 */
export function validateSendMail(req: SendMailRequest, limits: MessageLimits, now = Date.now()): { recipients: number; size: number } {
  const recipients = req.to.length + req.cc.length + req.bcc.length;
  if (recipients === 0) throw invalid('to', 'at least one recipient is required (to, cc or bcc)');
  for (const field of ['to', 'cc', 'bcc'] as const) {
    req[field].forEach((addr, i) => {
      const parsed = parseAddress(addr);
      if (typeof parsed === 'string') throw invalid(`${field}[${i}]`, parsed);
    });
  }
  if (limits.maxRecipientsPerMessage && recipients > limits.maxRecipientsPerMessage) {
    throw invalid('to', `${recipients} recipients exceed this sender's limit of ${limits.maxRecipientsPerMessage} per message (to + cc + bcc); split the message`);
  }
  if (req.replyTo) {
    const parsed = parseAddress(req.replyTo);
    if (typeof parsed === 'string') throw invalid('reply_to', parsed);
  }
  if (/[\r\n]/.test(req.subject)) throw invalid('subject', 'must not contain line breaks');
  for (const [name, value] of Object.entries(req.headers)) {
    if (!FIELD_NAME.test(name)) throw invalid(`headers["${name}"]`, 'is not a valid header name (printable ASCII, no spaces or ":")');
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw invalid(`headers["${name}"]`, 'is set by the relay; use the message fields (to, cc, subject, reply_to, ...) instead');
    if (/[\r\n]/.test(value)) throw invalid(`headers["${name}"]`, 'value must not contain line breaks');
  }
  req.attachments.forEach((a, i) => {
    if (!a.filename.trim()) throw invalid(`attachments[${i}].filename`, 'is required');
    if (/[\r\n\0/\\]/.test(a.filename)) throw invalid(`attachments[${i}].filename`, 'must not contain line breaks or path separators');
    if (a.contentType && !CONTENT_TYPE.test(a.contentType)) throw invalid(`attachments[${i}].content_type`, `"${a.contentType}" is not a media type like application/pdf`);
  });
  if (req.idempotencyKey.length > MAX_IDEMPOTENCY_KEY) throw invalid('idempotency_key', `must be at most ${MAX_IDEMPOTENCY_KEY} characters`);
  if (req.sendAt) {
    const at = Number(req.sendAt.seconds) * 1000 + Math.floor(req.sendAt.nanos / 1e6);
    const ahead = limits.maxScheduleAheadMs ?? MAX_SCHEDULE_AHEAD_MS;
    if (at - now > ahead) throw invalid('send_at', `is more than ${Math.round(ahead / 86_400_000)} days ahead`);
  }
  const size = messageSize(req);
  if (size > limits.maxMessageBytes) {
    throw invalid('attachments', `the message is ${formatBytes(size)}, over the limit of ${formatBytes(limits.maxMessageBytes)} (text, html, attachments and headers together)`);
  }
  return { recipients, size };
}

function formatBytes(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`;
}
