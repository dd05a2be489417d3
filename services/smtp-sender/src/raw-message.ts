import { randomBytes } from 'node:crypto';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { foldLines } from 'nodemailer/lib/mime-funcs/index.js';
import type { SenderConfig } from '@relay/config';
import type { Envelope } from '@relay/proto';
import { withoutTraceHeaders } from './message.js';
import type { RawMail } from './send-raw.js';

/**
 * The message for an envelope as finished RFC 5322 text, for the common case where nothing in it
 * needs MIME encoding; undefined otherwise, and the caller lets nodemailer compose it.
 *
 * Composing a message tree costs nodemailer about as much CPU as the SMTP exchange itself, for
 * output that in the common case is the input with headers in front. The result goes to the pool
 * as it is (sendRaw; dot-stuffing happens in the SMTP connection). `trace` is the `traceparent`
 * header to add. The headers come out as nodemailer's composer writes them: same fields, order,
 * names and folding, Bcc only in the envelope. The common case:
 * - plain addresses: `local@host` or `Name <local@host>` with a dot-atom local part, a host name
 *   (lowercased, as nodemailer does) and a display name of printable ASCII (quoted when needed);
 * - subject and custom header values in printable ASCII that need no encoded words;
 * - text and/or html bodies in printable ASCII (tab and line breaks allowed) with lines of at most
 *   998 octets, sent as 7bit with CRLF line ends (nodemailer uses quoted-printable from 77);
 * - no attachments.
 */
export function buildRawMessage(env: Envelope, sender: SenderConfig, trace: Record<string, string> = {}): RawMail | undefined {
  if (env.attachments.length > 0 || (!env.text && !env.html)) return undefined;
  const from = simpleAddress(sender.from);
  const replyToInput = env.replyTo || sender.replyTo;
  const replyTo = replyToInput ? simpleAddress(replyToInput) : undefined;
  if (!from || (replyToInput && !replyTo)) return undefined;
  const to = simpleAddresses(env.to);
  const cc = simpleAddresses(env.cc);
  const bcc = simpleAddresses(env.bcc);
  if (!to || !cc || !bcc) return undefined;
  const fromDomain = sender.from.replace(/^.*@/, '').replace(/>.*$/, '');
  if (!MESSAGE_ID_PART.test(env.messageId) || !MESSAGE_ID_PART.test(fromDomain)) return undefined;

  const lines: string[] = [];
  // The caller's headers, then the trace header, as buildMessage orders them for the composer.
  for (const [key, value] of Object.entries({ ...withoutTraceHeaders(env.headers, trace), ...trace })) {
    if (!FIELD_NAME.test(key) || COMPOSED_FIELDS.has(key.toLowerCase()) || !plainHeaderText(value)) return undefined;
    pushHeader(lines, normalizeHeaderKey(key), value);
  }
  if (!plainHeaderText(env.subject)) return undefined;
  pushHeader(lines, 'X-Relay-Message-ID', env.messageId);
  pushHeader(lines, 'From', from.header);
  pushHeader(lines, 'To', to.map((a) => a.header).join(', '));
  pushHeader(lines, 'Cc', cc.map((a) => a.header).join(', '));
  if (replyTo) pushHeader(lines, 'Reply-To', replyTo.header);
  pushHeader(lines, 'Subject', env.subject);
  const messageId = `<${env.messageId}@${fromDomain}>`;
  pushHeader(lines, 'Message-ID', messageId);
  // Without a submission time nodemailer adds Date itself, after Content-Transfer-Encoding.
  const date = (d: Date) => pushHeader(lines, 'Date', d.toUTCString().replace(/GMT/, '+0000'));
  if (env.submittedAt) date(timestampDate(env.submittedAt));

  const text = env.text ? sevenBit(env.text) : '';
  const html = env.html ? sevenBit(env.html) : '';
  if (text === undefined || html === undefined) return undefined;
  let body: string;
  if (text && html) {
    const boundary = `--_Relay-${randomBytes(12).toString('base64url')}-Alt`;
    // Random enough that it cannot be guessed; checked anyway, a boundary must not occur in a part.
    if (text.includes(boundary) || html.includes(boundary)) return undefined;
    if (!env.submittedAt) date(new Date());
    pushHeader(lines, 'MIME-Version', '1.0');
    pushHeader(lines, 'Content-Type', `multipart/alternative; boundary="${boundary}"`);
    // As nodemailer lays out a multipart body: the CRLF before each delimiter belongs to it.
    body = `--${boundary}\r\n${TEXT_PART_HEADERS}${text}` + `\r\n--${boundary}\r\n${HTML_PART_HEADERS}${html}` + `\r\n--${boundary}--\r\n`;
  } else {
    pushHeader(lines, 'Content-Transfer-Encoding', '7bit');
    if (!env.submittedAt) date(new Date());
    pushHeader(lines, 'MIME-Version', '1.0');
    pushHeader(lines, 'Content-Type', text ? 'text/plain; charset=utf-8' : 'text/html; charset=utf-8');
    const content = text || html;
    body = content.endsWith('\r\n') ? content : `${content}\r\n`;
  }
  const envelopeTo = [...to, ...cc, ...bcc].map((a) => a.address);
  return {
    envelope: { from: from.address, to: envelopeTo },
    // One byte per character: everything in it is ASCII.
    raw: Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`, 'latin1'),
    messageId,
  };
}

const TEXT_PART_HEADERS = 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n';
const HTML_PART_HEADERS = 'Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n';

/** Header fields nodemailer composes or encodes in a way of its own; a custom one of these is left to it. */
const COMPOSED_FIELDS = new Set([
  'from',
  'sender',
  'to',
  'cc',
  'bcc',
  'reply-to',
  'subject',
  'date',
  'message-id',
  'in-reply-to',
  'references',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
  'content-id',
  'otp-token',
  'x-relay-message-id',
]);
/** Printable US-ASCII except ":" (RFC 5322 3.6.8), as ingest accepts header names. */
const FIELD_NAME = /^[!-9;-~]+$/;
/** Printable ASCII without '"', which nodemailer takes as a reason for an encoded word. */
const HEADER_TEXT = /^[ !#-~]*$/;
/** What goes between the angle brackets of a Message-ID unchanged. */
const MESSAGE_ID_PART = /^[!-;=?-~]+$/;

/** ASCII without control characters other than tab and line breaks, as 7bit text allows. */
const SEVEN_BIT = /^[\t\r\n -~]*$/;
/** RFC 5322 2.1.1, without the CRLF. */
const MAX_LINE_OCTETS = 998;
const BARE_LINE_BREAK = /\r(?!\n)|(?<!\r)\n/;

/** A header value nodemailer writes unchanged ("=?" would make it encode the value). */
function plainHeaderText(value: string): boolean {
  return HEADER_TEXT.test(value) && !value.includes('=?');
}

/** The body as 7bit text with CRLF line ends, or undefined when it cannot be sent as such. */
function sevenBit(body: string): string | undefined {
  if (!SEVEN_BIT.test(body)) return undefined;
  const crlf = BARE_LINE_BREAK.test(body) ? body.replace(/\r\n|\r|\n/g, '\r\n') : body;
  // A scan rather than /[^\r\n]{999}/, which V8 runs in time proportional to length × 999.
  for (let start = 0; ; ) {
    const lf = crlf.indexOf('\n', start);
    if ((lf < 0 ? crlf.length : lf - 1) - start > MAX_LINE_OCTETS) return undefined;
    if (lf < 0) return crlf;
    start = lf + 1;
  }
}

/** Adds `key: value` folded at 76 characters as nodemailer folds it; an empty value is left out, as there. */
function pushHeader(lines: string[], key: string, value: string) {
  if (!value.trim()) return;
  const line = `${key}: ${value}`;
  lines.push(line.length < 76 ? line : foldLines(line, 76));
}

/** nodemailer's spelling of a header name: Camel-Case, with MIME, DKIM, ID and the like in capitals. */
function normalizeHeaderKey(key: string): string {
  return key
    .toLowerCase()
    .replace(/^X-SMTPAPI$|^(MIME|DKIM|ARC|BIMI)\b|^OTP(?=-Token$)|^[a-z]|-(SPF|FBL|ID|MD5)$|-[a-z]/gi, (c) => c.toUpperCase())
    .replace(/^Content-Features$/i, 'Content-features');
}

interface SimpleAddress {
  /** The addr-spec, for the envelope. */
  address: string;
  /** The address as it goes into a header. */
  header: string;
}

const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]";
/** A dot-atom local part and a host name whose last label is not numeric (nor an IPv4 address). */
const ADDR_SPEC = new RegExp(
  `^(${ATEXT}+(?:\\.${ATEXT}+)*)@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)$`,
);
/**
 * `Name <addr-spec>`: a name of atext words and dots with single spaces, or a quoted one of
 * printable ASCII without quotes, backslashes or runs of spaces inside (nor "=?", as anywhere).
 */
const NAME_WORD = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+";
const NAMED = new RegExp(`^(?:(${NAME_WORD}(?: ${NAME_WORD})*)|"([ !#-\\[\\]-~]+)") <([^<>]*)>$`);
/** An IDNA label, which nodemailer would check and convert. */
const ACE_LABEL = /(?:^|\.)xn--/i;
/** A name nodemailer writes bare; any other goes into quotes. */
const BARE_NAME = /^[A-Za-z0-9_ ]*$/;

function simpleAddress(input: string): SimpleAddress | undefined {
  const named = NAMED.exec(input);
  const name = named ? (named[1] ?? named[2]!) : '';
  if (named && (name !== name.trim() || name.includes('  ') || name.includes('=?'))) return undefined;
  const spec = ADDR_SPEC.exec(named ? named[3]! : input);
  if (!spec || ACE_LABEL.test(spec[2]!)) return undefined;
  const address = `${spec[1]}@${spec[2]!.toLowerCase()}`;
  if (!named) return { address, header: address };
  return { address, header: `${BARE_NAME.test(name) ? name : `"${name}"`} <${address}>` };
}

function simpleAddresses(inputs: string[]): SimpleAddress[] | undefined {
  const out: SimpleAddress[] = [];
  for (const input of inputs) {
    const a = simpleAddress(input);
    if (!a) return undefined;
    out.push(a);
  }
  return out;
}
