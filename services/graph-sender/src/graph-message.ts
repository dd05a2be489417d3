import type { SenderConfig } from '@relay/config';
import { permanent } from '@relay/core';
import { parseAddress, remedyFor } from '@relay/mail';
import type { Attachment, Envelope } from '@relay/proto';

/** The header every relayed message carries (as over SMTP). */
export const RELAY_ID_HEADER = 'X-Relay-Message-Id';
/** Graph takes only `x-` custom headers, so the trace context travels as `x-traceparent`. */
export const TRACE_HEADER = 'x-traceparent';

/** Graph refuses request bodies over 4 MB. */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** Room kept under MAX_REQUEST_BYTES for what the estimate does not count exactly. */
const REQUEST_HEADROOM_BYTES = 16 * 1024;
/** Attachments of this size or more go through an upload session (Graph: 3 MB to 150 MB). */
export const UPLOAD_SESSION_MIN_BYTES = 3 * 1024 * 1024;
export const MAX_ATTACHMENT_BYTES = 150 * 1024 * 1024;

export interface Recipient {
  emailAddress: { address: string; name?: string };
}

export interface FileAttachmentJson {
  '@odata.type': '#microsoft.graph.fileAttachment';
  name: string;
  contentType: string;
  contentBytes: string;
}

/** The JSON `message` of sendMail and of a draft, without attachments. */
export interface GraphMessage {
  subject: string;
  body: { contentType: 'Text' | 'HTML'; content: string };
  from: Recipient;
  toRecipients: Recipient[];
  ccRecipients: Recipient[];
  bccRecipients: Recipient[];
  replyTo: Recipient[];
  internetMessageHeaders: Array<{ name: string; value: string }>;
}

export function recipient(input: string): Recipient {
  const parsed = parseAddress(input);
  if (typeof parsed === 'string') return { emailAddress: { address: input.trim() } };
  return { emailAddress: parsed.name ? { address: parsed.address, name: parsed.name } : { address: parsed.address } };
}

/**
 * The Graph message for an envelope. From is the sender's address (Graph keeps it, so send-as is
 * checked by Exchange); Reply-To defaults to the sender's. A Graph message has one body: the HTML
 * one when there is one, else the text. Graph carries only `x-` custom headers: any other header
 * fails the message, by name, rather than being left out unseen.
 */
export function buildGraphMessage(env: Envelope, sender: SenderConfig, traceparent?: string): GraphMessage {
  const headers = Object.entries(env.headers).filter(([name]) => !traceparent || name.toLowerCase() !== TRACE_HEADER);
  const refused = headers.filter(([name]) => !/^x-/i.test(name)).map(([name]) => name);
  if (refused.length) {
    const text = `UnsupportedInternetMessageHeader: ${refused.map((n) => `"${n}"`).join(', ')} cannot be sent through Microsoft Graph, which carries only custom headers named x-...`;
    const remedy = remedyFor(text);
    throw permanent(text, remedy ? { remedy } : {});
  }
  const replyTo = env.replyTo || sender.replyTo;
  return {
    subject: env.subject,
    body: env.html ? { contentType: 'HTML', content: env.html } : { contentType: 'Text', content: env.text },
    from: recipient(sender.from),
    toRecipients: env.to.map(recipient),
    ccRecipients: env.cc.map(recipient),
    bccRecipients: env.bcc.map(recipient),
    replyTo: replyTo ? [recipient(replyTo)] : [],
    internetMessageHeaders: [
      ...headers.map(([name, value]) => ({ name, value })),
      { name: RELAY_ID_HEADER, value: env.messageId },
      ...(traceparent ? [{ name: TRACE_HEADER, value: traceparent }] : []),
    ],
  };
}

export function fileAttachment(a: Attachment): FileAttachmentJson {
  return {
    '@odata.type': '#microsoft.graph.fileAttachment',
    name: a.filename,
    contentType: a.contentType || 'application/octet-stream',
    contentBytes: Buffer.from(a.content.buffer, a.content.byteOffset, a.content.byteLength).toString('base64'),
  };
}

/** Bytes of an attachment's JSON once base64-encoded, without encoding it. */
export function attachmentJsonBytes(a: Attachment): number {
  return 4 * Math.ceil(a.content.byteLength / 3) + Buffer.byteLength(a.filename) + Buffer.byteLength(a.contentType) + 120;
}

/** How a message goes out: one sendMail, or a draft with attachments added one by one. */
export type DeliveryPlan =
  | { kind: 'sendMail'; attachments: Attachment[] }
  | {
      kind: 'draft';
      /** In the draft's creating request. */
      withDraft: Attachment[];
      /** Each in a POST of its own (under 3 MB, but not fitting the draft's request). */
      posted: Attachment[];
      /** Each through an upload session (3 MB and more). */
      uploaded: Attachment[];
    };

/** Chooses the way that keeps every request under Graph's 4 MB. */
export function planDelivery(message: GraphMessage, attachments: Attachment[]): DeliveryPlan {
  const tooLarge = attachments.find((a) => a.content.byteLength > MAX_ATTACHMENT_BYTES);
  if (tooLarge) {
    const text = `ErrorAttachmentSizeShouldNotBeGreaterThanMaxSize: attachment "${tooLarge.filename}" is ${tooLarge.content.byteLength} bytes; Microsoft Graph takes attachments up to 150 MB`;
    throw permanent(text);
  }
  const limit = MAX_REQUEST_BYTES - REQUEST_HEADROOM_BYTES;
  const base = Buffer.byteLength(JSON.stringify({ message, saveToSentItems: false }));
  const inline = attachments.reduce((n, a) => n + attachmentJsonBytes(a), base);
  if (inline <= limit) return { kind: 'sendMail', attachments };
  const withDraft: Attachment[] = [];
  const posted: Attachment[] = [];
  const uploaded: Attachment[] = [];
  let size = base;
  for (const a of attachments) {
    if (a.content.byteLength >= UPLOAD_SESSION_MIN_BYTES) uploaded.push(a);
    else if (size + attachmentJsonBytes(a) <= limit) {
      withDraft.push(a);
      size += attachmentJsonBytes(a);
    } else posted.push(a);
  }
  return { kind: 'draft', withDraft, posted, uploaded };
}

/**
 * Byte ranges for an upload session: at most 4 MB each, every one but the last a multiple of
 * 320 KiB (Graph's rule for upload ranges). The largest such chunk is 12 × 320 KiB.
 */
export const UPLOAD_CHUNK_BYTES = 12 * 320 * 1024;

export function uploadRanges(size: number, chunk = UPLOAD_CHUNK_BYTES): Array<{ start: number; end: number }> {
  if (chunk % (320 * 1024) !== 0 || chunk > MAX_REQUEST_BYTES)
    throw new Error(`upload chunk of ${chunk} bytes: must be a multiple of 320 KiB and at most 4 MB`);
  const out: Array<{ start: number; end: number }> = [];
  for (let start = 0; start < size; start += chunk) out.push({ start, end: Math.min(size, start + chunk) - 1 });
  return out;
}
