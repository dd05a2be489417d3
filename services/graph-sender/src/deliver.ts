import type { SenderConfig } from '@relay/config';
import { retryable } from '@relay/core';
import { activeTraceparent } from '@relay/telemetry';
import type { Attachment, Envelope } from '@relay/proto';
import { GRAPH_DEFAULTS, type GraphClient, type GraphTarget } from './graph-client.js';
import { fitsMimeSendMail, graphMime, parsedForGraph } from './mime-message.js';
import { buildGraphMessage, fileAttachment, planDelivery, uploadRanges, type GraphMessage } from './graph-message.js';

export interface GraphDeliverer {
  /**
   * Sends one envelope through its sender's mailbox; resolves with Graph's answer and request-id.
   * A stop (`stopping`) before the first request got a mailbox slot hands the message back.
   */
  deliver(env: Envelope, stopping?: AbortSignal): Promise<string>;
}

type GraphSender = SenderConfig & { graph: NonNullable<SenderConfig['graph']> };

export function createGraphDeliverer(senders: () => Map<string, SenderConfig>, client: GraphClient): GraphDeliverer {
  return {
    async deliver(env, stopping) {
      const sender = senders().get(env.sender);
      if (!sender?.graph)
        throw retryable(`sender "${env.sender}" is not configured for Microsoft Graph in this graph-sender; the message waits for a configuration that has it`);
      const s = sender as GraphSender;
      const target: GraphTarget = { sender: s.id, mailbox: s.graph.mailbox, maxConcurrent: s.rate?.maxConcurrent ?? GRAPH_DEFAULTS.maxConcurrentPerMailbox };
      if (env.rawMime.length > 0) {
        const mime = graphMime(env, activeTraceparent());
        if (fitsMimeSendMail(mime)) return sendMime(client, s, target, mime, stopping);
        env = await parsedForGraph(env);
      }
      const message = buildGraphMessage(env, s, activeTraceparent());
      const plan = planDelivery(message, env.attachments);
      if (plan.kind === 'sendMail') return sendMail(client, s, target, message, plan.attachments, stopping);
      return sendDraft(client, s, target, message, plan, stopping);
    },
  };
}

function userUrl(s: GraphSender, rest: string): string {
  return `${s.graph.graphUrl}/v1.0/users/${encodeURIComponent(s.graph.mailbox)}${rest}`;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

async function sendMail(
  client: GraphClient,
  s: GraphSender,
  target: GraphTarget,
  message: GraphMessage,
  attachments: Attachment[],
  stopping?: AbortSignal,
): Promise<string> {
  const body = JSON.stringify({
    message: { ...message, ...(attachments.length ? { attachments: attachments.map(fileAttachment) } : {}) },
    saveToSentItems: s.graph.saveToSentItems,
  });
  const res = await client.call(target, {
    method: 'POST',
    url: userUrl(s, '/sendMail'),
    body,
    headers: JSON_HEADERS,
    bearer: true,
    ...(stopping ? { stopping } : {}),
  });
  return `${res.status} Accepted by Microsoft Graph sendMail for ${s.graph.mailbox}${attachments.length ? ` with ${attachments.length} attachment(s) inline` : ''} (request-id ${res.requestId ?? 'none'})`;
}

/** A message submitted over SMTP, sent as it was written: Graph's sendMail with base64 MIME. */
async function sendMime(client: GraphClient, s: GraphSender, target: GraphTarget, mime: Buffer, stopping?: AbortSignal): Promise<string> {
  const res = await client.call(target, {
    method: 'POST',
    url: userUrl(s, '/sendMail'),
    body: mime.toString('base64'),
    headers: { 'content-type': 'text/plain' },
    bearer: true,
    ...(stopping ? { stopping } : {}),
  });
  return `${res.status} Accepted by Microsoft Graph sendMail (MIME) for ${s.graph.mailbox} (request-id ${res.requestId ?? 'none'})`;
}

/**
 * The way for messages over 4 MB: create a draft, add the attachments (small ones in the same or
 * their own request, large ones by upload session in chunks), then send the draft. A draft left
 * by a failure is deleted, so a retry starts clean. Chunks are views of the message's body, never
 * copies of it.
 */
async function sendDraft(
  client: GraphClient,
  s: GraphSender,
  target: GraphTarget,
  message: GraphMessage,
  plan: Extract<ReturnType<typeof planDelivery>, { kind: 'draft' }>,
  stopping?: AbortSignal,
): Promise<string> {
  // Only the draft's creation may be given up at a stop; once it exists the delivery runs on.
  const created = await client.call(target, {
    method: 'POST',
    url: userUrl(s, '/messages'),
    body: JSON.stringify({ ...message, ...(plan.withDraft.length ? { attachments: plan.withDraft.map(fileAttachment) } : {}) }),
    headers: JSON_HEADERS,
    bearer: true,
    ...(stopping ? { stopping } : {}),
  });
  const draftId = (JSON.parse(created.text) as { id?: string }).id;
  if (!draftId) throw retryable(`Microsoft Graph created a draft without an id (request-id ${created.requestId ?? 'none'})`);
  const draftUrl = userUrl(s, `/messages/${encodeURIComponent(draftId)}`);
  try {
    for (const a of plan.posted) {
      await client.call(target, {
        method: 'POST',
        url: `${draftUrl}/attachments`,
        body: JSON.stringify(fileAttachment(a)),
        headers: JSON_HEADERS,
        bearer: true,
      });
    }
    for (const a of plan.uploaded) await upload(client, target, draftUrl, a);
    const sent = await client.call(target, { method: 'POST', url: `${draftUrl}/send`, bearer: true });
    const n = plan.withDraft.length + plan.posted.length + plan.uploaded.length;
    return `${sent.status} Accepted by Microsoft Graph for ${s.graph.mailbox}: draft sent with ${n} attachment(s), ${plan.uploaded.length} by upload session (request-id ${sent.requestId ?? 'none'})`;
  } catch (err) {
    await client.call(target, { method: 'DELETE', url: draftUrl, bearer: true }).catch(() => {
      // A draft left behind is harmless; the delivery error is what matters.
    });
    throw err;
  }
}

async function upload(client: GraphClient, target: GraphTarget, draftUrl: string, a: Attachment): Promise<void> {
  const size = a.content.byteLength;
  const session = await client.call(target, {
    method: 'POST',
    url: `${draftUrl}/attachments/createUploadSession`,
    body: JSON.stringify({
      AttachmentItem: { attachmentType: 'file', name: a.filename, size, contentType: a.contentType || 'application/octet-stream', isInline: false },
    }),
    headers: JSON_HEADERS,
    bearer: true,
  });
  const uploadUrl = (JSON.parse(session.text) as { uploadUrl?: string }).uploadUrl;
  if (!uploadUrl)
    throw retryable(`Microsoft Graph opened an upload session for "${a.filename}" without an uploadUrl (request-id ${session.requestId ?? 'none'})`);
  let done = false;
  for (const { start, end } of uploadRanges(size)) {
    const res = await client.call(target, {
      method: 'PUT',
      url: uploadUrl,
      body: a.content.subarray(start, end + 1),
      headers: { 'content-type': 'application/octet-stream', 'content-range': `bytes ${start}-${end}/${size}` },
      bearer: false,
    });
    done = res.status === 201;
  }
  if (!done) throw retryable(`Microsoft Graph did not complete the upload of "${a.filename}" after its last range`);
}
