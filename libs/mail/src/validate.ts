import { RelayError, ErrorCode } from '@relay/core';
import type { SendMailRequest } from '@relay/proto';
import { parseAddress } from './address.js';

export interface MessageLimits {
  maxMessageBytes: number;
  maxRecipientsPerMessage?: number | undefined;
  /** How far ahead send_at may be. */
  maxScheduleAheadMs?: number;
  /** Why the sender takes no mail to this addr-spec (e.g. outside its internal domains), or undefined. */
  recipientRefusal?: (address: string) => string | undefined;
}

export const MAX_SCHEDULE_AHEAD_MS = 30 * 86_400_000;
/** Recipients per message when the sender sets no limit of its own (Microsoft 365's limit). */
export const DEFAULT_MAX_RECIPIENTS = 500;
const MAX_IDEMPOTENCY_KEY = 256;

/** Headers the relay sets itself from the request fields and the sender's configuration. */
const RESERVED_HEADERS = new Set([
  'from',
  'to',
  'cc',
  'bcc',
  'subject',
  'reply-to',
  'sender',
  'date',
  'message-id',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'return-path',
]);
/**
 * Headers that receiving servers and signers add and that readers trust: a caller setting them
 * could forge a message's path or its authentication results.
 */
const TRUST_HEADERS = new Set(['received', 'authentication-results', 'dkim-signature', 'domainkey-signature', 'received-spf', 'return-path', 'delivered-to']);
// X-MS-Exchange-*: Exchange acts on its organization headers (spam verdicts, authentication).
const TRUST_PREFIXES = ['arc-', 'resent-', 'content-', 'x-ms-exchange-'];
/** What a caller may set: threading, list and automation headers, and its own X- headers. */
const ALLOWED_NAMES = [
  'In-Reply-To',
  'References',
  'Auto-Submitted',
  'Precedence',
  'Keywords',
  'Comments',
  'Importance',
  'Priority',
  'Sensitivity',
  'Organization',
  'Feedback-ID',
];
const ALLOWED_PREFIXES = ['X-', 'List-'];
const ALLOWED = new Set(ALLOWED_NAMES.map((n) => n.toLowerCase()));
export const ALLOWED_HEADERS_TEXT = [...ALLOWED_PREFIXES.map((p) => `${p}*`), ...ALLOWED_NAMES].join(', ');
const FIELD_NAME = /^[!-9;-~]+$/; // printable US-ASCII except ":" (RFC 5322 3.6.8)
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(?: *; *[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|"[^"\\]*"))*$/;
/** C0 controls but tab, DEL, C1 controls and Unicode line separators: any of them could end or fold a header line. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is its purpose.
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u2028\u2029]/;

function invalid(field: string, reason: string): RelayError {
  return new RelayError(ErrorCode.InvalidArgument, `${field}: ${reason}`);
}

/** Why a caller may not set header `name`, or undefined when it may. */
export function headerRefusal(name: string): string | undefined {
  const lower = name.toLowerCase();
  if (!FIELD_NAME.test(name)) return 'is not a valid header name (printable ASCII, no spaces or ":")';
  if (RESERVED_HEADERS.has(lower)) return 'is set by the relay; use the message fields (to, cc, subject, reply_to, ...) instead';
  if (TRUST_HEADERS.has(lower) || TRUST_PREFIXES.some((p) => lower.startsWith(p)))
    return 'is a trace, authentication or MIME header that only the relay and receiving servers set';
  if (!ALLOWED.has(lower) && !ALLOWED_PREFIXES.some((p) => lower.startsWith(p.toLowerCase())))
    return `may not be set by a caller (allowed: ${ALLOWED_HEADERS_TEXT})`;
  return undefined;
}

/** Refuses control characters in a value that ends up in a header line. */
function noControls(field: string, value: string) {
  if (CONTROL.test(value)) throw invalid(field, 'must not contain line breaks or control characters');
}

/**
 * The message's size as the relay counts it against the limit: bodies, attachments, headers and
 * recipients, so a long recipient list cannot slip past the limit.
 */
export function messageSize(req: SendMailRequest): number {
  let n = Buffer.byteLength(req.subject) + Buffer.byteLength(req.text) + Buffer.byteLength(req.html) + Buffer.byteLength(req.replyTo);
  for (const field of [req.to, req.cc, req.bcc]) for (const r of field) n += Buffer.byteLength(r);
  for (const a of req.attachments) n += a.content.byteLength + Buffer.byteLength(a.filename) + Buffer.byteLength(a.contentType);
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
  const maxRecipients = limits.maxRecipientsPerMessage ?? DEFAULT_MAX_RECIPIENTS;
  if (recipients > maxRecipients) {
    throw invalid('to', `${recipients} recipients exceed this sender's limit of ${maxRecipients} per message (to + cc + bcc); split the message`);
  }
  for (const field of ['to', 'cc', 'bcc'] as const) {
    req[field].forEach((addr, i) => {
      noControls(`${field}[${i}]`, addr);
      const parsed = parseAddress(addr);
      if (typeof parsed === 'string') throw invalid(`${field}[${i}]`, parsed);
      const refusal = limits.recipientRefusal?.(parsed.address);
      if (refusal) throw invalid(`${field}[${i}]`, refusal);
    });
  }
  if (req.replyTo) {
    noControls('reply_to', req.replyTo);
    const parsed = parseAddress(req.replyTo);
    if (typeof parsed === 'string') throw invalid('reply_to', parsed);
  }
  noControls('subject', req.subject);
  for (const [name, value] of Object.entries(req.headers)) {
    const refusal = headerRefusal(name);
    if (refusal) throw invalid(`headers["${name}"]`, refusal);
    if (CONTROL.test(value)) throw invalid(`headers["${name}"]`, 'value must not contain line breaks or control characters');
  }
  req.attachments.forEach((a, i) => {
    if (!a.filename.trim()) throw invalid(`attachments[${i}].filename`, 'is required');
    noControls(`attachments[${i}].filename`, a.filename);
    if (/[/\\]/.test(a.filename)) throw invalid(`attachments[${i}].filename`, 'must not contain path separators');
    noControls(`attachments[${i}].content_type`, a.contentType);
    if (a.contentType && !CONTENT_TYPE.test(a.contentType))
      throw invalid(
        `attachments[${i}].content_type`,
        `"${a.contentType}" is not a media type like application/pdf (parameters as ; name=value, no line breaks)`,
      );
  });
  if (req.idempotencyKey.length > MAX_IDEMPOTENCY_KEY) throw invalid('idempotency_key', `must be at most ${MAX_IDEMPOTENCY_KEY} characters`);
  if (req.sendAt) {
    const at = Number(req.sendAt.seconds) * 1000 + Math.floor(req.sendAt.nanos / 1e6);
    const ahead = limits.maxScheduleAheadMs ?? MAX_SCHEDULE_AHEAD_MS;
    if (at - now > ahead) throw invalid('send_at', `is more than ${Math.round(ahead / 86_400_000)} days ahead`);
  }
  const size = messageSize(req);
  if (size > limits.maxMessageBytes) {
    throw invalid(
      'attachments',
      `the message is ${formatBytes(size)}, over the limit of ${formatBytes(limits.maxMessageBytes)} (text, html, attachments and headers together)`,
    );
  }
  return { recipients, size };
}

function formatBytes(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`;
}
