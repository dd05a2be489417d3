import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { describe } from '@relay/core';
import { listenHttp, type Logger } from '@relay/telemetry';

export interface PublicHttp {
  port: number;
  close(): Promise<void>;
}

/** What the browser's return from a consent sign-in carries, as the credentials service reads it. */
export interface ConsentReturn {
  state: string;
  code: string;
  error: string;
  errorDescription: string;
}

/** Bounds on the public port's input: a browser's request is far smaller, anything larger is refused unread. */
export const PUBLIC_HTTP_LIMITS = {
  /** The request line's target, query included (414 above it). */
  urlBytes: 8 * 1024,
  /** All headers together (Node answers 431 above it). */
  headerBytes: 16 * 1024,
  /** Time to receive the headers, and the whole request. */
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  /** Each field of the consent redirect. */
  consent: { state: 512, code: 4096, error: 128, error_description: 1024 },
} as const;

/**
 * Every page: never cached, never sniffed into another type, framed or given a referrer; the
 * pages may load nothing at all (no script, style, image or form target).
 */
export const PAGE_HEADERS = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
} as const;

/** The page a browser sees after signing in; the message may echo the provider's or the caller's text, so it is escaped. */
export function callbackPage(status: number, message: string): string {
  const title = status === 200 ? 'Signed in' : 'Sign-in not completed';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Campus Relay: ${title}</title></head><body><h1>${title}</h1><p>${escapeHtml(message)}</p></body></html>`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Another handler on the same port (the console): true when it answered the request. */
export type PublicRoute = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;

export interface PublicHttpOptions {
  port: number;
  host: string;
  /** Certificate and key (RELAY_TLS_CERT / RELAY_TLS_KEY): HTTPS when given. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  ready: () => Promise<boolean>;
  logger: Logger;
  /** Relays the consent redirect to the credentials service; resolves with the page's status and text. */
  completeConsent: (fields: ConsentReturn) => Promise<{ status: number; message: string }>;
  routes?: PublicRoute[];
}

/**
 * RELAY_HTTP_PORT on ingest: the OAuth redirect target (`/oauth/callback`, relayed to the
 * credentials service, which alone holds the pending sign-ins), `/healthz`, `/readyz`, and the
 * routes given (the console).
 */
export async function startPublicHttp(opts: PublicHttpOptions): Promise<PublicHttp> {
  const handler: RequestListener = (req, res) => {
    const send = (status: number, body: string, type: 'text' | 'html' = 'text') => {
      if (res.headersSent) return;
      res.writeHead(status, { ...PAGE_HEADERS, 'content-type': type === 'html' ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8' });
      res.end(body.endsWith('\n') ? body : `${body}\n`);
    };
    void (async () => {
      if (Buffer.byteLength(req.url ?? '') > PUBLIC_HTTP_LIMITS.urlBytes) return send(414, `request target longer than ${PUBLIC_HTTP_LIMITS.urlBytes} bytes`);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        return send(400, 'request target is not a valid path');
      }
      if (url.pathname === '/healthz' || url.pathname === '/readyz' || url.pathname === '/oauth/callback') {
        if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, `method ${req.method} not allowed (GET only)`);
        if (url.pathname === '/healthz') return send(200, 'ok');
        if (url.pathname === '/readyz') {
          const ok = await opts.ready().catch(() => false);
          return send(ok ? 200 : 503, ok ? 'ready' : 'not ready');
        }
        const r = await consentReturn(url.searchParams, opts);
        return send(r.status, callbackPage(r.status, r.message), 'html');
      }
      for (const route of opts.routes ?? []) if (await route(req, res, url)) return;
      send(404, 'not found');
    })().catch((err: unknown) => {
      opts.logger.error({ err: describe(err), path: req.url?.split('?')[0] }, 'http request failed');
      send(500, 'internal error');
    });
  };
  const options = {
    maxHeaderSize: PUBLIC_HTTP_LIMITS.headerBytes,
    headersTimeout: PUBLIC_HTTP_LIMITS.headersTimeoutMs,
    requestTimeout: PUBLIC_HTTP_LIMITS.requestTimeoutMs,
  };
  const server: Server = opts.tls ? createTlsServer({ ...options, cert: opts.tls.cert, key: opts.tls.key }, handler) : createServer(options, handler);
  return listenHttp(server, opts.port, opts.host);
}

/** Checks the redirect's fields against their bounds, then relays them; a relay that fails is a 503 page, its cause only logged. */
async function consentReturn(q: URLSearchParams, opts: PublicHttpOptions): Promise<{ status: number; message: string }> {
  const limits = PUBLIC_HTTP_LIMITS.consent;
  for (const name of Object.keys(limits) as Array<keyof typeof limits>) {
    const values = q.getAll(name);
    if (values.length > 1) return { status: 400, message: `The sign-in answer carries "${name}" more than once. Start again with "Authenticate with MFA".` };
    if ((values[0] ?? '').length > limits[name]) {
      return { status: 400, message: `The sign-in answer's "${name}" is longer than ${limits[name]} characters. Start again with "Authenticate with MFA".` };
    }
  }
  if (!q.get('state')) return { status: 400, message: 'The sign-in answer has no state. Start again with "Authenticate with MFA".' };
  try {
    return await opts.completeConsent({
      state: q.get('state') ?? '',
      code: q.get('code') ?? '',
      error: q.get('error') ?? '',
      errorDescription: q.get('error_description') ?? '',
    });
  } catch (err) {
    opts.logger.error({ err: describe(err) }, 'consent callback not relayed to the credentials service');
    return {
      status: 503,
      message: 'The relay could not reach its credentials service to complete the sign-in. Nothing was stored; try the link again in a minute.',
    };
  }
}
