import { backoffMs, DeliveryError, retryable } from '@relay/core';
import { describeGraphError, diagnoseHttps, graphRemedyFor, parseGraphError, type GraphErrorAnswer } from '@relay/mail';
import type { GraphTokens } from './graph-token.js';
import type { MailboxSlots } from './mailbox-slots.js';

export interface GraphTiming {
  maxConcurrentPerMailbox: number;
  throttleRetries: number;
  maxInPlaceWaitMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  requestTimeoutMs: number;
}

export const GRAPH_DEFAULTS: GraphTiming = {
  /** Graph's limit of concurrent requests per mailbox, when the sender's rate names none. */
  maxConcurrentPerMailbox: 4,
  /** Throttled answers (429/503/504) waited out in place before the message goes back to the queue. */
  throttleRetries: 3,
  /** A Retry-After longer than this is not waited out in place: the message is retried later. */
  maxInPlaceWaitMs: 60_000,
  /** Backoff without Retry-After: first wait, and the cap (with jitter). */
  backoffInitialMs: 1_000,
  backoffMaxMs: 30_000,
  /** Time allowed for one request, upload chunks included. */
  requestTimeoutMs: 120_000,
};

/** Statuses Graph uses for throttling and brief unavailability; honoured with Retry-After. */
const THROTTLED = new Set([429, 503, 504]);

export interface GraphTarget {
  /** Sender id, for its token. */
  sender: string;
  mailbox: string;
  /** Concurrent requests allowed for the mailbox across replicas. */
  maxConcurrent: number;
}

export interface GraphRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  /** JSON text, or raw bytes (upload chunks). */
  body?: string | Uint8Array;
  headers?: Record<string, string>;
  /** False for upload URLs, which carry their own token and refuse a bearer token. */
  bearer: boolean;
  /**
   * For a delivery's first request: aborted when the service stops, it ends a wait for a mailbox
   * slot before anything was sent (the message is handed back).
   */
  stopping?: AbortSignal;
}

export interface GraphResponse {
  status: number;
  headers: Headers;
  text: string;
  requestId: string | undefined;
}

/** Graph's final answer to a request that did not succeed: a DeliveryError with Graph's code and request-id. */
export class GraphCallError extends DeliveryError {
  override name = 'GraphCallError';
  readonly answer: GraphErrorAnswer;
  constructor(answer: GraphErrorAnswer, opts: { retryable: boolean; retryAfterMs?: number; remedy?: string }) {
    super(describeGraphError(answer), opts);
    this.answer = answer;
  }
}

export function isGraphCallError(err: unknown): err is GraphCallError {
  return err instanceof GraphCallError;
}

export interface GraphClient {
  /** One request, with a mailbox slot, the sender's token, throttling waited out and one token refresh on 401. */
  call(target: GraphTarget, req: GraphRequest): Promise<GraphResponse>;
}

export interface GraphClientDeps {
  tokens: Pick<GraphTokens, 'get'>;
  slots: MailboxSlots;
  timing?: Partial<GraphTiming>;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
}

export function createGraphClient(deps: GraphClientDeps): GraphClient {
  const t = { ...GRAPH_DEFAULTS, ...deps.timing };
  const doFetch = deps.fetch ?? fetch;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));

  return {
    async call(target, req) {
      let refreshToken = false;
      let refreshed = false;
      let throttled = 0;
      let first = true;
      for (;;) {
        const token = req.bearer ? await deps.tokens.get(target.sender, { rejected: refreshToken }) : undefined;
        refreshToken = false;
        const release = await deps.slots.acquire(target.mailbox, target.maxConcurrent, first ? req.stopping : undefined);
        first = false;
        let got: { res: Response; text: string } | { err: unknown };
        try {
          got = await doFetch(req.url, {
            method: req.method,
            headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...req.headers },
            ...(req.body !== undefined ? { body: req.body } : {}),
            signal: AbortSignal.timeout(t.requestTimeoutMs),
          }).then(
            async (res) => ({ res, text: await res.text() }),
            (err: unknown) => ({ err }),
          );
        } finally {
          await release();
        }
        // No HTTP answer: where the way to Graph breaks, once the mailbox slot is free again.
        if ('err' in got) throw await unreachable(req, got.err);
        const { res, text } = got;
        const requestId = res.headers.get('request-id') ?? undefined;
        if (res.ok) return { status: res.status, headers: res.headers, text, requestId };

        const answer = parseGraphError(res.status, text, res.headers);
        // An expired or revoked token: one new token and one more try before 401 is an answer.
        if (res.status === 401 && req.bearer && !refreshed) {
          refreshed = true;
          refreshToken = true;
          continue;
        }
        if (THROTTLED.has(res.status)) {
          throttled++;
          const wait = answer.retryAfterMs ?? backoffMs(throttled, t.backoffInitialMs, t.backoffMaxMs);
          if (throttled <= t.throttleRetries && wait <= t.maxInPlaceWaitMs) {
            await sleep(wait);
            continue;
          }
          throw new GraphCallError(answer, { retryable: true, retryAfterMs: wait });
        }
        throw classifyGraphAnswer(answer);
      }
    },
  };
}

/**
 * Graph's verdict on a request: 4xx is final (wrong permission, mailbox, recipients, size: no
 * retry fixes it) with Graph's code and a remedy; 5xx is Graph's own trouble and is retried.
 */
export function classifyGraphAnswer(answer: GraphErrorAnswer): GraphCallError {
  if (answer.status >= 500 || THROTTLED.has(answer.status)) {
    return new GraphCallError(answer, { retryable: true, ...(answer.retryAfterMs !== undefined ? { retryAfterMs: answer.retryAfterMs } : {}) });
  }
  // Only Graph's own entries apply (a word in Graph's text must not pick an SMTP remedy).
  const remedy = graphRemedyFor(`${answer.code}: ${answer.message}`);
  return new GraphCallError(answer, { retryable: false, ...(remedy ? { remedy } : {}) });
}

/** Upload URLs carry a token in their query; it never goes into a status event or a log. */
export function redactUrl(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

/** A request that got no HTTP answer: the host, the cause and the remedy when a probe finds them. */
async function unreachable(req: GraphRequest, err: unknown): Promise<DeliveryError> {
  const broken = await diagnoseHttps(req.url).catch(() => undefined);
  if (!broken) return retryable(`${req.method} ${redactUrl(req.url)}: ${networkText(err)}`, { cause: err });
  return retryable(`cannot reach Microsoft Graph at ${broken.host}: ${broken.cause}`, { cause: err, remedy: broken.remedy });
}

function networkText(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return 'no answer in time';
  return e.cause?.code ? `${e.cause.code} ${e.cause.message ?? ''}`.trim() : e.message;
}
