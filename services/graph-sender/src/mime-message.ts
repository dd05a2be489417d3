import { create } from '@bufbuild/protobuf';
import { simpleParser, type AddressObject } from 'mailparser';
import { readHeaders } from '@relay/mail';
import { AttachmentSchema, EnvelopeSchema, type Envelope } from '@relay/proto';
import { MAX_REQUEST_BYTES, RELAY_ID_HEADER, TRACE_HEADER } from './graph-message.js';

/** Room kept under Graph's 4 MB for the request line and headers. */
const MIME_HEADROOM_BYTES = 16 * 1024;

/**
 * A message submitted over the SMTP door, as Graph's MIME sendMail takes it: the client's bytes
 * with the relay id and trace header in front. Graph sends to the recipients in the header
 * section, not to an SMTP envelope, so envelope recipients the headers do not name (the client's
 * Bcc) go into a Bcc field, which Graph delivers to and does not show.
 */
export function graphMime(env: Envelope, traceparent?: string): Buffer {
  const named = new Set(readHeaders(env.rawMime).recipients);
  const hidden = env.envelopeTo.filter((a) => !named.has(a.toLowerCase()));
  const lines = [
    `${RELAY_ID_HEADER}: ${env.messageId}`,
    ...(traceparent ? [`${TRACE_HEADER}: ${traceparent}`] : []),
    ...(hidden.length ? [`Bcc: ${hidden.join(', ')}`] : []),
  ];
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1'), Buffer.from(env.rawMime.buffer, env.rawMime.byteOffset, env.rawMime.byteLength)]);
}

/** Whether the base64 form of `mime` fits in one Graph request (under 4 MB). */
export function fitsMimeSendMail(mime: Buffer): boolean {
  return 4 * Math.ceil(mime.length / 3) <= MAX_REQUEST_BYTES - MIME_HEADROOM_BYTES;
}

/**
 * A submitted message too large for MIME sendMail, parsed into the fields the draft and upload
 * session path sends: recipients (the SMTP envelope's where the headers do not name them), subject,
 * one body (HTML if there is one), attachments and the x- headers Graph carries. What Graph
 * cannot take this way (other headers, the MIME structure itself) is left behind; docs/graph.md.
 */
export async function parsedForGraph(env: Envelope): Promise<Envelope> {
  const parsed = await simpleParser(Buffer.from(env.rawMime.buffer, env.rawMime.byteOffset, env.rawMime.byteLength), {
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipImageLinks: true,
  });
  const list = (a: AddressObject | AddressObject[] | undefined) =>
    (Array.isArray(a) ? a : a ? [a] : [])
      .flatMap((o) => o.value)
      .map((v) => v.address ?? '')
      .filter(Boolean);
  const to = list(parsed.to);
  const cc = list(parsed.cc);
  const bcc = list(parsed.bcc);
  const named = new Set([...to, ...cc, ...bcc].map((a) => a.toLowerCase()));
  const headers: Record<string, string> = {};
  for (const h of parsed.headerLines) {
    const name = h.line.slice(0, h.line.indexOf(':'));
    if (/^x-/i.test(name) && !/^(x-relay-message-id|x-traceparent)$/i.test(name))
      headers[name] = h.line
        .slice(name.length + 1)
        .replace(/\r?\n[ \t]/g, ' ')
        .trim();
  }
  return create(EnvelopeSchema, {
    ...env,
    rawMime: new Uint8Array(),
    to,
    cc,
    bcc: [...bcc, ...env.envelopeTo.filter((a) => !named.has(a.toLowerCase()))],
    replyTo: list(parsed.replyTo)[0] ?? '',
    subject: parsed.subject ?? '',
    text: parsed.text ?? '',
    html: typeof parsed.html === 'string' ? parsed.html : '',
    headers,
    attachments: parsed.attachments.map((a) =>
      create(AttachmentSchema, { filename: a.filename ?? 'attachment', contentType: a.contentType, content: a.content }),
    ),
  });
}
