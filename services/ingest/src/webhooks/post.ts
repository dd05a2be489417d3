import type { Webhook } from 'standardwebhooks';

/** Makes the `webhook-signature` header of one delivery: the id, the time it states and the body, signed. */
export type WebhookSign = (id: string, at: Date, body: string) => Promise<string>;

/** Signs with secrets held here (relay.yaml's): one signature per secret, space-separated, so a receiver holding either one verifies it. */
export function localSign(signers: readonly Webhook[]): WebhookSign {
  return async (id, at, body) => signers.map((s) => s.sign(id, at, body)).join(' ');
}

export interface PostOptions {
  /** The whole attempt: connect, request, answer and the part of the body that is read. */
  timeoutMs: number;
  /** How much of the receiver's body is read (and kept for the delivery log); the rest is dropped. */
  maxResponseBytes: number;
}

export const POST_DEFAULTS: PostOptions = { timeoutMs: 10_000, maxResponseBytes: 1_024 };

/** What one attempt came to; `ok` only for a 2xx answer. */
export interface PostOutcome {
  ok: boolean;
  /** 0 when there was no answer. */
  status: number;
  error: string;
  response: string;
  durationMs: number;
}

/**
 * Posts one event, signed with the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature`: HMAC-SHA256 over id, timestamp and body, one per secret). Redirects are not followed (a
 * 3xx is a failed attempt: the receiver's URL should be fixed instead), and at most
 * `maxResponseBytes` of the answer is read. A signature that cannot be made is a failed attempt
 * too: nothing unsigned is posted.
 */
export async function postEvent(url: string, id: string, body: string, sign: WebhookSign, opts: PostOptions = POST_DEFAULTS): Promise<PostOutcome> {
  const started = performance.now();
  const now = new Date();
  const took = () => Math.round(performance.now() - started);
  let signature: string;
  try {
    signature = await sign(id, now, body);
  } catch (err) {
    return { ok: false, status: 0, error: `not signed: ${(err as Error)?.message || String(err)}`, response: '', durationMs: took() };
  }
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs),
      headers: {
        'content-type': 'application/json',
        'user-agent': 'campus-relay-webhooks',
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
        'webhook-signature': signature,
      },
      body,
    });
  } catch (err) {
    return { ok: false, status: 0, error: failure(err, opts.timeoutMs), response: '', durationMs: took() };
  }
  let response = '';
  try {
    response = await readBounded(res, opts.maxResponseBytes);
  } catch (err) {
    // The status came; an answer cut off or too slow still counts by its status.
    response = `(body not read: ${failure(err, opts.timeoutMs)})`;
  }
  const ok = res.status >= 200 && res.status < 300;
  let error = '';
  if (!ok) {
    const location = res.headers.get('location');
    error =
      res.status >= 300 && res.status < 400
        ? `HTTP ${res.status}: redirects are not followed${location ? ` (to ${location.slice(0, 200)})` : ''}; give the final URL`
        : `HTTP ${res.status}`;
  }
  return { ok, status: res.status, error, response, durationMs: took() };
}

async function readBounded(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < max) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    // The rest is not wanted: cancelling frees the connection instead of reading it all.
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}

function failure(err: unknown, timeoutMs: number): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const cause = e?.cause;
  if (cause?.code) return `${cause.code}${cause.message ? `: ${cause.message}` : ''}`;
  return e?.message || String(err);
}
