import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { simpleParser, type AddressObject } from 'mailparser';
import type { IdentityFake } from './identity-fake.js';
import { createFakeFolders } from './graph-fake-folders.js';
import { testCa } from './tls.js';

/** A mailbox-wide failure the fake answers every request for that mailbox with, as Graph does. */
export type GraphMailboxFailure =
  | 'ErrorAccessDenied'
  | 'ApplicationAccessPolicy'
  | 'MailboxNotEnabledForRESTAPI'
  | 'ErrorInvalidRecipients'
  | 'ErrorMessageSizeExceeded';

export interface GraphMailbox {
  /** Addresses this mailbox may send as, besides its own (Exchange "Send As"). */
  sendAs?: string[];
  failure?: GraphMailboxFailure;
}

export interface GraphFakeOptions {
  /** Its access tokens are the only ones accepted; revoked or expired ones get 401. */
  identity: IdentityFake;
  /** Existing mailboxes by address (lower case). Others answer 404 ErrorInvalidUser. */
  mailboxes: Record<string, GraphMailbox>;
  /**
   * Exchange RBAC for Applications: client id → role → the mailboxes that role assignment is
   * scoped to. A request needing that role for another mailbox gets 403 ErrorAccessDenied; roles
   * and apps not listed reach every mailbox.
   */
  appScopes?: Record<string, Partial<Record<'Mail.Send' | 'Mail.ReadWrite', string[]>>>;
  /** Largest request body accepted (Graph: 4 MB); larger ones get 413. */
  maxRequestBytes?: number;
  /** Delay before every answer, so that concurrent requests overlap. */
  delayMs?: number;
}

export interface GraphAttachment {
  name: string;
  contentType: string;
  isInline: boolean;
  size: number;
  sha256: string;
  /** How it arrived: inline in the message JSON, a POST on attachments, or an upload session. */
  via: 'inline' | 'post' | 'upload-session';
  /** Body sizes of the PUTs of an upload session, in order. */
  chunks: number[];
}

/** A message Graph accepted for sending. */
export interface GraphSentMessage {
  mailbox: string;
  /** The message JSON as sent (attachments' contentBytes removed; see `attachments`). */
  message: GraphMessageJson;
  attachments: GraphAttachment[];
  saveToSentItems: boolean;
  via: 'sendMail' | 'draft' | 'mime';
  requestId: string;
  /** For `via: 'mime'`: the decoded MIME message as Graph received it. */
  mime?: Buffer;
}

export interface GraphMessageJson {
  subject?: string;
  body?: { contentType: string; content: string };
  from?: { emailAddress: { address: string; name?: string } };
  toRecipients?: Array<{ emailAddress: { address: string } }>;
  ccRecipients?: Array<{ emailAddress: { address: string } }>;
  bccRecipients?: Array<{ emailAddress: { address: string } }>;
  replyTo?: Array<{ emailAddress: { address: string } }>;
  internetMessageHeaders?: Array<{ name: string; value: string }>;
  attachments?: unknown[];
  [key: string]: unknown;
}

export interface GraphRequestLog {
  method: string;
  /** Path without the query string; upload URLs appear as /upload/<session>. */
  path: string;
  mailbox: string;
  status: number;
  at: number;
  requestId: string;
  /** Whether an Authorization header came with it. */
  authorized: boolean;
}

export interface GraphFake {
  /** Use it as `graph_url`. */
  url: string;
  sent: GraphSentMessage[];
  requests: GraphRequestLog[];
  /** The most requests to one mailbox that were in progress at the same time. */
  peakInFlight(mailbox: string): number;
  /** Requests to one mailbox in progress now (received, not yet answered). */
  inFlight(mailbox: string): number;
  /** The next `times` requests for `mailbox` answer `status` (default 429) with Retry-After when given. */
  throttle(mailbox: string, o: { times: number; retryAfterSeconds?: number; status?: 429 | 503 | 504 }): void;
  /** Drafts created and not yet sent or deleted. */
  openDrafts(): number;
  /** Puts a message (MIME) into a mailbox folder, `Inbox` by default (made when missing); returns its id. */
  deliver(mailbox: string, raw: Buffer | string, folder?: string): string;
  /** The MIME of every message in a mailbox folder (by display name). */
  folderMessages(mailbox: string, folder: string): Buffer[];
  close(): Promise<void>;
}

const MB4 = 4 * 1024 * 1024;
const CHUNK_UNIT = 320 * 1024;

interface Draft {
  mailbox: string;
  message: GraphMessageJson;
  attachments: GraphAttachment[];
}

interface UploadSession {
  mailbox: string;
  draftId: string;
  name: string;
  contentType: string;
  isInline: boolean;
  size: number;
  received: number;
  hash: ReturnType<typeof createHash>;
  chunks: number[];
}

class Answer extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * A stand-in for Microsoft Graph's mail API over HTTPS (test CA): sendMail, draft messages,
 * attachments, createUploadSession with chunked PUTs, draft send and delete. It checks what real
 * Graph checks and the relay must get right: bearer tokens from the identity fake (401 when
 * expired or revoked), Mail.Send / Mail.ReadWrite in the token's roles when present, the app's
 * mailbox scope (RBAC for Applications, `appScopes`), or for a user's (delegated) token in its
 * `scp` and for the signed-in user's own mailbox only (`/me` too); mail folders and messages are
 * read with Mail.Read or Mail.ReadWrite and moved or made with Mail.ReadWrite only; Send As,
 * x- header names, the 4 MB request limit, upload ranges (in order, at most 4 MB, multiples of
 * 320 KiB but the last), no Authorization header on upload URLs. It counts requests in progress
 * per mailbox and can be told to throttle.
 */
export async function startGraphFake(opts: GraphFakeOptions): Promise<GraphFake> {
  const ca = testCa();
  const maxBytes = opts.maxRequestBytes ?? MB4;
  const mailboxes = new Map(Object.entries(opts.mailboxes).map(([k, v]) => [k.toLowerCase(), v]));
  const drafts = new Map<string, Draft>();
  const sessions = new Map<string, UploadSession>();
  const inFlight = new Map<string, number>();
  const peak = new Map<string, number>();
  const throttles = new Map<string, { times: number; retryAfterSeconds?: number; status: number }>();
  const sent: GraphSentMessage[] = [];
  const requests: GraphRequestLog[] = [];
  const folders = createFakeFolders((status, code, message) => new Answer(status, code, message));
  let base = '';

  const server = createServer({ cert: ca.certPem, key: ca.keyPem }, (req, res) => {
    void serve(req, res);
  });

  async function serve(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', base);
    const requestId = randomUUID();
    const mailbox = mailboxOf(url.pathname, req);
    inFlight.set(mailbox, (inFlight.get(mailbox) ?? 0) + 1);
    peak.set(mailbox, Math.max(peak.get(mailbox) ?? 0, inFlight.get(mailbox)!));
    let status = 500;
    try {
      const body = await readBody(req);
      if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
      const out = await route(req, url, mailbox, body, requestId);
      status = out.status;
      if (out.raw) {
        res.writeHead(status, { 'request-id': requestId, 'content-type': 'text/plain', ...out.headers }).end(out.raw);
        return;
      }
      const text = out.json === undefined ? '' : JSON.stringify(out.json);
      res.writeHead(status, { 'request-id': requestId, ...(text ? { 'content-type': 'application/json' } : {}), ...out.headers }).end(text);
    } catch (err) {
      const a = err instanceof Answer ? err : new Answer(500, 'InternalServerError', String(err));
      status = a.status;
      const text = JSON.stringify({ error: { code: a.code, message: a.message, innerError: { 'request-id': requestId, date: new Date().toISOString() } } });
      res.writeHead(status, { 'request-id': requestId, 'content-type': 'application/json', ...a.headers }).end(text);
    } finally {
      inFlight.set(mailbox, inFlight.get(mailbox)! - 1);
      requests.push({
        method: req.method ?? '',
        path: url.pathname,
        mailbox,
        status,
        at: Date.now(),
        requestId,
        authorized: req.headers.authorization !== undefined,
      });
    }
  }

  function mailboxOf(path: string, req: IncomingMessage): string {
    // /me is the signed-in user of a delegated token.
    if (/^\/v1\.0\/me\//.test(path)) return (delegatedOf(bearerOf(req) ?? '')?.user ?? '').toLowerCase();
    const user = /^\/v1\.0\/users\/([^/]+)/.exec(path);
    if (user) return decodeURIComponent(user[1]!).toLowerCase();
    const upload = /^\/upload\/([^/]+)/.exec(path);
    return upload ? (sessions.get(upload[1]!)?.mailbox ?? '') : '';
  }

  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of req) {
      n += (c as Buffer).length;
      // Keep reading (the client is still sending) but stop keeping what is over the limit.
      if (n <= maxBytes + 1) chunks.push(c as Buffer);
    }
    if (n > maxBytes) throw new Answer(413, 'RequestEntityTooLarge', `The request body is ${n} bytes; the limit is ${maxBytes}.`);
    return Buffer.concat(chunks);
  }

  function checkThrottle(mailbox: string) {
    const t = throttles.get(mailbox);
    if (!t || t.times <= 0) return;
    t.times--;
    const headers: Record<string, string> = t.retryAfterSeconds !== undefined ? { 'retry-after': String(t.retryAfterSeconds) } : {};
    const code = t.status === 429 ? 'ApplicationThrottled' : t.status === 503 ? 'ServiceUnavailable' : 'GatewayTimeout';
    throw new Answer(t.status, code, 'Application is over its MailboxConcurrency limit.', headers);
  }

  /** `accepted`: the permissions any of which allows the request (reading: Mail.Read too); `permission` picks the RBAC scope. */
  function authorize(req: IncomingMessage, mailbox: string, permission: 'Mail.Send' | 'Mail.ReadWrite', accepted: readonly string[] = [permission]): void {
    const token = bearerOf(req);
    if (!token || !opts.identity.acceptsAccessToken(token)) {
      throw new Answer(401, 'InvalidAuthenticationToken', 'Access token has expired or is not yet valid.', {
        'www-authenticate': 'Bearer error="invalid_token"',
      });
    }
    const box = mailboxes.get(mailbox);
    if (!box) throw new Answer(404, 'ErrorInvalidUser', `The requested user '${mailbox}' is invalid.`);
    const claims = claimsOf(token);
    const roles = Array.isArray(claims?.roles) ? (claims.roles as string[]) : undefined;
    if (roles && !accepted.some((p) => roles.includes(p))) {
      throw new Answer(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
    }
    const scope = typeof claims?.appid === 'string' ? opts.appScopes?.[claims.appid]?.[permission] : undefined;
    if (scope && !scope.some((m) => m.toLowerCase() === mailbox)) {
      throw new Answer(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
    }
    // A user's token acts for that user's own mailbox only (another one needs Mail.Send.Shared and Exchange rights).
    const delegated = delegatedOf(token);
    if (delegated && (!accepted.some((p) => delegated.scopes.includes(p)) || delegated.user.toLowerCase() !== mailbox)) {
      throw new Answer(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
    }
    switch (box.failure) {
      case 'ErrorAccessDenied':
        throw new Answer(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
      case 'ApplicationAccessPolicy':
        throw new Answer(403, 'ErrorAccessDenied', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.');
      case 'MailboxNotEnabledForRESTAPI':
        throw new Answer(404, 'MailboxNotEnabledForRESTAPI', 'The mailbox is either inactive, soft-deleted, or is hosted on-premise.');
      default:
    }
  }

  function checkMessage(mailbox: string, m: GraphMessageJson) {
    const box = mailboxes.get(mailbox)!;
    const from = m.from?.emailAddress?.address?.toLowerCase();
    if (from && from !== mailbox && !(box.sendAs ?? []).map((a) => a.toLowerCase()).includes(from)) {
      throw new Answer(
        403,
        'ErrorSendAsDenied',
        'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.',
      );
    }
    for (const h of m.internetMessageHeaders ?? []) {
      if (!/^x-/i.test(h.name))
        throw new Answer(400, 'InvalidInternetMessageHeader', `The internet message header name '${h.name}' should start with 'x-' or 'X-'.`);
    }
    const recipients = [...(m.toRecipients ?? []), ...(m.ccRecipients ?? []), ...(m.bccRecipients ?? [])];
    if (box.failure === 'ErrorInvalidRecipients' || recipients.some((r) => !/^[^\s@]+@[^\s@]+$/.test(r.emailAddress?.address ?? ''))) {
      throw new Answer(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid., Recipient is not valid.');
    }
    if (!recipients.length) throw new Answer(400, 'ErrorInvalidRecipients', 'At least one recipient is required.');
    if (box.failure === 'ErrorMessageSizeExceeded')
      throw new Answer(413, 'ErrorMessageSizeExceeded', 'The message exceeds the maximum supported size., Cannot save changes made to an item to store.');
  }

  /** sendMail's MIME form: the message base64-encoded, recipients and From read from its headers. */
  async function sendMime(mailbox: string, body: Buffer, requestId: string): Promise<{ status: number }> {
    const mime = Buffer.from(body.toString('latin1'), 'base64');
    if (mime.length === 0) throw new Answer(400, 'ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.');
    const parsed = await simpleParser(mime);
    const list = (a: AddressObject | AddressObject[] | undefined) =>
      (Array.isArray(a) ? a : a ? [a] : []).flatMap((o) => o.value).map((v) => ({ emailAddress: { address: v.address ?? '' } }));
    const from = list(parsed.from)[0];
    const message: GraphMessageJson = {
      subject: parsed.subject ?? '',
      ...(from ? { from } : {}),
      toRecipients: list(parsed.to),
      ccRecipients: list(parsed.cc),
      bccRecipients: list(parsed.bcc),
    };
    checkMessage(mailbox, message);
    const attachments = parsed.attachments.map((a) => ({
      name: a.filename ?? '',
      contentType: a.contentType,
      isInline: a.contentDisposition === 'inline',
      size: a.content.length,
      sha256: sha256(a.content),
      via: 'inline' as const,
      chunks: [],
    }));
    sent.push({ mailbox, message, attachments, saveToSentItems: true, via: 'mime', requestId, mime });
    return { status: 202 };
  }

  function takeInlineAttachments(m: GraphMessageJson): GraphAttachment[] {
    const list = (m.attachments ?? []) as Array<{ '@odata.type'?: string; name?: string; contentType?: string; contentBytes?: string; isInline?: boolean }>;
    delete m.attachments;
    return list.map((a) => {
      if (a['@odata.type'] !== '#microsoft.graph.fileAttachment')
        throw new Answer(400, 'ErrorInvalidRequest', 'attachments need @odata.type #microsoft.graph.fileAttachment');
      const bytes = Buffer.from(a.contentBytes ?? '', 'base64');
      return {
        name: a.name ?? '',
        contentType: a.contentType ?? '',
        isInline: a.isInline ?? false,
        size: bytes.length,
        sha256: sha256(bytes),
        via: 'inline' as const,
        chunks: [],
      };
    });
  }

  function json<T>(body: Buffer): T {
    try {
      return JSON.parse(body.toString('utf8')) as T;
    } catch {
      throw new Answer(400, 'BadRequest', 'Unable to read JSON request payload.');
    }
  }

  function draftOf(mailbox: string, id: string): Draft {
    const d = drafts.get(id);
    if (!d || d.mailbox !== mailbox) throw new Answer(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
    return d;
  }

  async function route(
    req: IncomingMessage,
    url: URL,
    mailbox: string,
    body: Buffer,
    requestId: string,
  ): Promise<{ status: number; json?: unknown; raw?: Buffer; headers?: Record<string, string> }> {
    const method = req.method ?? '';
    const path = url.pathname;
    const upload = /^\/upload\/([^/]+)$/.exec(path);
    if (upload && method === 'PUT') return put(req, upload[1]!, body);
    if (/^\/v1\.0\/(?:users\/[^/]+|me)\/(?:mailFolders|messages\/[^/]+\/(?:\$value|move)$)/.test(path)) {
      checkThrottle(mailbox);
      // Listing and reading take Mail.Read or Mail.ReadWrite; making folders and moving take Mail.ReadWrite.
      authorize(req, mailbox, 'Mail.ReadWrite', method === 'GET' ? ['Mail.Read', 'Mail.ReadWrite'] : ['Mail.ReadWrite']);
      return folders.route(method, path, url, mailbox, body)!;
    }
    const m = /^\/v1\.0\/(?:users\/[^/]+|me)\/(sendMail|messages)(?:\/([^/]+))?(?:\/(send|attachments))?(?:\/(createUploadSession))?$/.exec(path);
    if (!m) throw new Answer(400, 'BadRequest', `Resource not found for the segment '${path}'.`);
    const [, kind, id, action, session] = m;
    checkThrottle(mailbox);
    if (kind === 'sendMail' && method === 'POST' && !id) {
      authorize(req, mailbox, 'Mail.Send');
      if ((req.headers['content-type'] ?? '').toLowerCase().startsWith('text/plain')) return sendMime(mailbox, body, requestId);
      const payload = json<{ message?: GraphMessageJson; saveToSentItems?: boolean }>(body);
      if (!payload.message) throw new Answer(400, 'ErrorInvalidParameter', "The value of the parameter 'Message' is empty.");
      checkMessage(mailbox, payload.message);
      const attachments = takeInlineAttachments(payload.message);
      sent.push({ mailbox, message: payload.message, attachments, saveToSentItems: payload.saveToSentItems ?? true, via: 'sendMail', requestId });
      return { status: 202 };
    }
    if (kind !== 'messages') throw new Answer(405, 'ErrorInvalidRequest', `${method} is not supported on ${path}`);
    if (!id && method === 'POST') {
      authorize(req, mailbox, 'Mail.ReadWrite');
      const message = json<GraphMessageJson>(body);
      const attachments = takeInlineAttachments(message);
      const draftId = randomBytes(12).toString('base64url');
      drafts.set(draftId, { mailbox, message, attachments });
      return { status: 201, json: { id: draftId, isDraft: true, subject: message.subject } };
    }
    if (id && !action && method === 'DELETE') {
      authorize(req, mailbox, 'Mail.ReadWrite');
      draftOf(mailbox, id);
      drafts.delete(id);
      return { status: 204 };
    }
    if (id && action === 'attachments' && !session && method === 'POST') {
      authorize(req, mailbox, 'Mail.ReadWrite');
      const d = draftOf(mailbox, id);
      const a = json<{ '@odata.type'?: string; name?: string; contentType?: string; contentBytes?: string; isInline?: boolean }>(body);
      const [att] = takeInlineAttachments({ attachments: [a] });
      if (att!.size > 3 * 1024 * 1024)
        throw new Answer(413, 'ErrorAttachmentSizeShouldNotBeLessThanMinimumSize', 'Attachments of 3 MB or more need an upload session.');
      d.attachments.push({ ...att!, via: 'post' });
      return { status: 201, json: { id: randomBytes(8).toString('base64url'), name: att!.name, size: att!.size } };
    }
    if (id && action === 'attachments' && session && method === 'POST') {
      authorize(req, mailbox, 'Mail.ReadWrite');
      draftOf(mailbox, id);
      const item = json<{ AttachmentItem?: { attachmentType?: string; name?: string; size?: number; contentType?: string; isInline?: boolean } }>(
        body,
      ).AttachmentItem;
      if (item?.attachmentType !== 'file' || !item.name || typeof item.size !== 'number') {
        throw new Answer(400, 'ErrorInvalidParameter', 'AttachmentItem with attachmentType file, name and size is required.');
      }
      if (item.size > 150 * 1024 * 1024) throw new Answer(400, 'ErrorAttachmentSizeShouldNotBeGreaterThanMaxSize', 'Attachments are limited to 150 MB.');
      const sessionId = randomBytes(16).toString('base64url');
      sessions.set(sessionId, {
        mailbox,
        draftId: id,
        name: item.name,
        contentType: item.contentType ?? 'application/octet-stream',
        isInline: item.isInline ?? false,
        size: item.size,
        received: 0,
        hash: createHash('sha256'),
        chunks: [],
      });
      return {
        status: 201,
        json: {
          uploadUrl: `${base}/upload/${sessionId}?authtoken=${randomBytes(12).toString('base64url')}`,
          expirationDateTime: new Date(Date.now() + 3_600_000).toISOString(),
          nextExpectedRanges: ['0-'],
        },
      };
    }
    if (id && action === 'send' && method === 'POST') {
      authorize(req, mailbox, 'Mail.Send');
      const d = draftOf(mailbox, id);
      checkMessage(mailbox, d.message);
      drafts.delete(id);
      sent.push({ mailbox, message: d.message, attachments: d.attachments, saveToSentItems: true, via: 'draft', requestId });
      return { status: 202 };
    }
    throw new Answer(405, 'ErrorInvalidRequest', `${method} is not supported on ${path}`);
  }

  function put(req: IncomingMessage, sessionId: string, body: Buffer) {
    const s = sessions.get(sessionId);
    if (!s) throw new Answer(404, 'ErrorItemNotFound', 'The upload session was not found or has expired.');
    // Upload URLs carry their own token; Graph refuses a bearer token on them.
    if (req.headers.authorization) throw new Answer(401, 'InvalidAuthenticationToken', 'Do not send an Authorization header to an upload URL.');
    checkThrottle(s.mailbox);
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers['content-range'] ?? '');
    if (!range) throw new Answer(400, 'InvalidContentRange', 'Content-Range: bytes start-end/total is required.');
    const [start, end, total] = [Number(range[1]), Number(range[2]), Number(range[3])];
    const length = end - start + 1;
    if (total !== s.size || start !== s.received || length !== body.length || length > MB4) {
      throw new Answer(
        416,
        'InvalidRange',
        `Expected bytes ${s.received}- of ${s.size} (at most 4 MB); got ${req.headers['content-range']} with ${body.length} bytes.`,
      );
    }
    const last = end + 1 === s.size;
    if (!last && length % CHUNK_UNIT !== 0)
      throw new Answer(400, 'InvalidRange', `A chunk other than the last must be a multiple of 320 KiB; got ${length} bytes.`);
    s.hash.update(body);
    s.received += length;
    s.chunks.push(length);
    if (!last) return { status: 200, json: { expirationDateTime: new Date(Date.now() + 3_600_000).toISOString(), nextExpectedRanges: [`${s.received}-`] } };
    sessions.delete(sessionId);
    const d = drafts.get(s.draftId);
    if (!d) throw new Answer(404, 'ErrorItemNotFound', 'The message of this upload session is gone.');
    const attId = randomBytes(8).toString('base64url');
    d.attachments.push({
      name: s.name,
      contentType: s.contentType,
      isInline: s.isInline,
      size: s.size,
      sha256: s.hash.digest('hex'),
      via: 'upload-session',
      chunks: s.chunks,
    });
    return { status: 201, headers: { location: `${base}/v1.0/users/${encodeURIComponent(s.mailbox)}/messages/${s.draftId}/attachments/${attId}` } };
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: base,
    sent,
    requests,
    peakInFlight: (mailbox) => peak.get(mailbox.toLowerCase()) ?? 0,
    inFlight: (mailbox) => inFlight.get(mailbox.toLowerCase()) ?? 0,
    throttle(mailbox, o) {
      throttles.set(mailbox.toLowerCase(), {
        times: o.times,
        status: o.status ?? 429,
        ...(o.retryAfterSeconds !== undefined ? { retryAfterSeconds: o.retryAfterSeconds } : {}),
      });
    },
    openDrafts: () => drafts.size,
    deliver: (mailbox, raw, folder) => folders.deliver(mailbox, raw, folder),
    folderMessages: (mailbox, folder) => folders.messages(mailbox, folder),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function bearerOf(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
}

/** Who signed in and the delegated permissions (`scp`) of a user's token; undefined for app-only and opaque tokens. */
function delegatedOf(token: string): { user: string; scopes: string[] } | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { scp?: unknown; upn?: unknown };
    if (typeof claims.scp !== 'string') return undefined;
    return { user: typeof claims.upn === 'string' ? claims.upn : '', scopes: claims.scp.split(' ') };
  } catch {
    return undefined;
  }
}

function claimsOf(token: string): { roles?: unknown; appid?: unknown } | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    return JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { roles?: unknown; appid?: unknown };
  } catch {
    return undefined;
  }
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
