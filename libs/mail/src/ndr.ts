import { ErrorCode, RelayError } from '@relay/core';
import { simpleParser, type Attachment, type ParsedMail } from 'mailparser';

/** What became of one recipient, as a delivery report says. */
export type RecipientOutcomeKind = 'bounced' | 'delayed' | 'delivered';

export interface RecipientReport {
  recipient: string;
  outcome: RecipientOutcomeKind;
  /** The enhanced status code (RFC 3463), e.g. `5.1.1`; empty when the report gives none. */
  status: string;
  /** The receiving server's reply or the reporting server's reason, on one line. */
  diagnostic: string;
}

export interface DeliveryReport {
  /** How the report was read: the RFC 3464 machine part, or one provider's human-readable text. */
  format: 'rfc3464' | 'exchange-text' | 'gmail-text';
  /** The relay's message id of the original message, when the report names it. */
  relayMessageId?: string;
  /** The original message's Message-ID header (angle brackets included), when the report has it. */
  originalMessageId?: string;
  /** The report's own Message-ID, to recognise the same report read twice. */
  reportMessageId?: string;
  /** When the report was written (its Date header), if it says. */
  date?: Date;
  recipients: RecipientReport[];
}

/** Largest delivery report read: reports carry the original message, which the relay bounds to less. */
export const MAX_NDR_BYTES = 16 * 1024 * 1024;
/** Longest diagnostic kept per recipient. */
export const MAX_DIAGNOSTIC_CHARS = 1_000;
/** Most recipients read from one report. */
export const MAX_REPORT_RECIPIENTS = 1_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RELAY_ID = /^[A-Za-z0-9-]{1,64}$/;
const ENHANCED = /\b([245]\.\d{1,3}\.\d{1,3})\b/;
const DAEMON = /^(mailer-daemon|postmaster|microsoftexchange[0-9a-f]*)@/i;

/**
 * Reads a message from a sender's mailbox as a delivery report (bounce, delay notice or delivery
 * notice): undefined when it is none. Understood: RFC 3464 `multipart/report;
 * report-type=delivery-status` (Postfix, Gmail, Exchange Online and any MTA that follows the RFC),
 * and, when the machine-readable part is missing, Exchange's and Gmail's human-readable forms.
 * Throws INVALID_ARGUMENT for a message over `maxBytes`, before reading it.
 */
export async function parseDeliveryReport(raw: Buffer, maxBytes = MAX_NDR_BYTES): Promise<DeliveryReport | undefined> {
  if (raw.length > maxBytes) {
    throw new RelayError(ErrorCode.InvalidArgument, `delivery report is ${raw.length} bytes, more than the ${maxBytes} read at most`);
  }
  const mail = await simpleParser(raw, { keepDeliveryStatus: true, skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true });
  const report = readMachinePart(mail) ?? readExchangeText(mail) ?? readGmailText(mail);
  if (!report || report.recipients.length === 0) return undefined;
  const original = originalIds(mail, report.perMessage);
  return {
    format: report.format,
    ...original,
    ...(mail.messageId ? { reportMessageId: mail.messageId } : {}),
    ...(mail.date ? { date: mail.date } : {}),
    recipients: report.recipients.slice(0, MAX_REPORT_RECIPIENTS),
  };
}

interface Found {
  format: DeliveryReport['format'];
  recipients: RecipientReport[];
  /** The per-message fields of a delivery-status part. */
  perMessage?: Fields;
}

type Fields = Map<string, string[]>;

function readMachinePart(mail: ParsedMail): Found | undefined {
  const part = mail.attachments.find((a) => a.contentType === 'message/delivery-status' || a.contentType === 'message/global-delivery-status');
  if (!part) return undefined;
  const groups = headerGroups(part.content.toString('utf8'));
  const isRecipient = (g: Fields) => g.has('final-recipient') || g.has('original-recipient');
  const recipients: RecipientReport[] = [];
  for (const g of groups.filter(isRecipient)) {
    const recipient = addressOf(first(g, 'final-recipient') ?? first(g, 'original-recipient') ?? '');
    if (!recipient) continue;
    const diagnostic = oneLine(typeStripped(first(g, 'diagnostic-code') ?? ''));
    const status = statusOf(first(g, 'status') ?? '') || statusOf(diagnostic);
    const outcome = outcomeOf(first(g, 'action') ?? '', status);
    if (outcome) recipients.push({ recipient, outcome, status, diagnostic });
  }
  return { format: 'rfc3464', recipients, perMessage: groups.find((g) => !isRecipient(g)) };
}

/** Exchange's "Diagnostic information for administrators": each recipient, then `Remote Server returned '...'`. */
function readExchangeText(mail: ParsedMail): Found | undefined {
  if (!fromDaemon(mail) && !mail.headers.has('x-ms-exchange-message-is-ndr')) return undefined;
  const text = mail.text ?? '';
  const recipients: RecipientReport[] = [];
  // The reply runs to the quote that ends the line: it may hold apostrophes itself.
  for (const m of text.matchAll(/^[ \t]*<?([^\s<>@]+@[^\s<>@]+?)>?[ \t]*\r?\n[ \t]*Remote Server returned '([^\r\n]*)'[ \t]*\r?$/gim)) {
    const diagnostic = oneLine(m[2]!);
    const status = statusOf(diagnostic);
    recipients.push({ recipient: m[1]!, outcome: outcomeOf('', status) ?? 'bounced', status, diagnostic });
  }
  return recipients.length > 0 ? { format: 'exchange-text', recipients } : undefined;
}

/** Gmail's "Your message wasn't delivered to ..." (or "There was a temporary problem delivering ..."). */
function readGmailText(mail: ParsedMail): Found | undefined {
  if (!fromDaemon(mail)) return undefined;
  const text = mail.text ?? '';
  const response = /The response(?: from the remote server)? was:[ \t]*\r?\n(?:[ \t]*\r?\n)?([\s\S]*?)(?:\r?\n[ \t]*\r?\n|$)/i.exec(text);
  const diagnostic = response ? oneLine(response[1]!) : '';
  const status = statusOf(diagnostic);
  const recipients: RecipientReport[] = [];
  for (const m of text.matchAll(/Your message wasn't delivered to (\S+@[^\s]+?) because/gi)) {
    recipients.push({ recipient: m[1]!, outcome: 'bounced', status, diagnostic });
  }
  for (const m of text.matchAll(/There was a temporary problem delivering your message to (\S+@[^\s]+?)\./gi)) {
    recipients.push({ recipient: m[1]!, outcome: 'delayed', status, diagnostic });
  }
  return recipients.length > 0 ? { format: 'gmail-text', recipients } : undefined;
}

function fromDaemon(mail: ParsedMail): boolean {
  return (mail.from?.value ?? []).some((a) => a.address !== undefined && DAEMON.test(a.address));
}

/**
 * The original message's ids: from its attached copy or headers, the report's own per-message
 * fields, Exchange's "Original message headers" text, then the report's In-Reply-To and References.
 */
function originalIds(mail: ParsedMail, perMessage: Fields | undefined): Pick<DeliveryReport, 'relayMessageId' | 'originalMessageId'> {
  const candidates: Fields[] = [];
  for (const a of mail.attachments.filter(isOriginal)) candidates.push(headerGroups(a.content.toString('utf8'))[0] ?? new Map());
  const inText = /^Original message headers:[ \t]*\r?\n(?:[ \t]*\r?\n)?([\s\S]*)$/im.exec(mail.text ?? '');
  if (inText) candidates.push(headerGroups(inText[1]!)[0] ?? new Map());
  let relayMessageId: string | undefined;
  let originalMessageId: string | undefined;
  for (const h of candidates) {
    const rid = first(h, 'x-relay-message-id')?.trim();
    if (!relayMessageId && rid && RELAY_ID.test(rid)) relayMessageId = rid;
    originalMessageId ??= first(h, 'message-id')?.trim() || undefined;
  }
  originalMessageId ??= (perMessage && (first(perMessage, 'x-original-message-id') ?? first(perMessage, 'original-message-id'))?.trim()) || undefined;
  const ids = [originalMessageId, mail.inReplyTo, ...[mail.references ?? []].flat()].filter((v): v is string => !!v);
  relayMessageId ??= ids.map(relayIdOfMessageId).find((v) => v !== undefined);
  return { ...(relayMessageId ? { relayMessageId } : {}), ...(originalMessageId ? { originalMessageId } : {}) };
}

function isOriginal(a: Attachment): boolean {
  return a.contentType === 'message/rfc822' || a.contentType === 'text/rfc822-headers' || a.contentType === 'message/global-headers';
}

/** The relay's id from a Message-ID it wrote (`<message id@sender's domain>`). */
export function relayIdOfMessageId(messageId: string): string | undefined {
  const m = /^\s*<?([^@<>\s]+)@[^<>\s]+>?\s*$/.exec(messageId);
  return m && UUID.test(m[1]!) ? m[1]!.toLowerCase() : undefined;
}

/**
 * Header-style fields in groups separated by blank lines (RFC 3464 section 2.1), names
 * lowercased; a folded value keeps its line breaks (see oneLine). Reads the first groups only.
 */
function headerGroups(text: string): Fields[] {
  const groups: Fields[] = [];
  let current: Fields | undefined;
  let last: { name: string; index: number } | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') {
      current = undefined;
      last = undefined;
      if (groups.length > MAX_REPORT_RECIPIENTS) break;
      continue;
    }
    if (/^[ \t]/.test(line) && last && current) {
      const values = current.get(last.name)!;
      values[last.index] += `\n${line}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (!current) groups.push((current = new Map()));
    const name = line.slice(0, colon).trim().toLowerCase();
    const values = current.get(name) ?? [];
    values.push(line.slice(colon + 1).trim());
    current.set(name, values);
    last = { name, index: values.length - 1 };
  }
  return groups;
}

function first(fields: Fields, name: string): string | undefined {
  return fields.get(name)?.[0];
}

/** `rfc822; a@b` → `a@b`; angle brackets and surrounding space removed. */
function addressOf(value: string): string {
  return typeStripped(value).replace(/^<|>$/g, '').trim();
}

/** A typed field's value without its type (`smtp; 550 ...` → `550 ...`). */
function typeStripped(value: string): string {
  const m = /^\s*[A-Za-z0-9-]+\s*;\s*([\s\S]*)$/.exec(value);
  return m ? m[1]! : value.trim();
}

function statusOf(value: string): string {
  return ENHANCED.exec(value)?.[1] ?? '';
}

function outcomeOf(action: string, status: string): RecipientOutcomeKind | undefined {
  switch (action.trim().toLowerCase()) {
    case 'failed':
      return 'bounced';
    case 'delayed':
      return 'delayed';
    case 'delivered':
    case 'relayed':
    case 'expanded':
      return 'delivered';
  }
  return status.startsWith('5') ? 'bounced' : status.startsWith('4') ? 'delayed' : status.startsWith('2') ? 'delivered' : undefined;
}

/**
 * A multi-line reply on one line: `550-5.1.1 a\n 550-5.1.1 b\n 550 5.1.1 c` → `550 5.1.1 a b c`,
 * spaces collapsed, cut at MAX_DIAGNOSTIC_CHARS.
 */
function oneLine(value: string): string {
  const lines = value
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (lines.length === 0) return '';
  const head = /^(\d{3})[ -](?:([245]\.\d{1,3}\.\d{1,3})[ \t]+)?/.exec(lines[0]!);
  let text: string;
  if (head) {
    const prefix = new RegExp(`^${head[1]}[ -](?:${(head[2] ?? '').replaceAll('.', '\\.')}(?:[ \\t]+|$))?`);
    const rest = lines.map((l) => l.replace(prefix, ''));
    text = `${head[1]} ${head[2] ? `${head[2]} ` : ''}${rest.join(' ')}`;
  } else {
    text = lines.join(' ');
  }
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > MAX_DIAGNOSTIC_CHARS ? `${text.slice(0, MAX_DIAGNOSTIC_CHARS - 1)}…` : text;
}
