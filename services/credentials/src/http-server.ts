import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { listenHttp, type Logger } from '@relay/telemetry';
import type { Consent } from './consent.js';

export interface CredentialsHttp {
  port: number;
  close(): Promise<void>;
}

/**
 * Every answer: never cached, never sniffed into another type, framed or given a referrer; the
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
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Campus Relay: ${title}</title></head><body><h1>${title}</h1><p>${escapeHtml(message)}</p></body></html>`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** RELAY_HTTP_PORT: the OAuth redirect target (`/oauth/callback`) plus /healthz and /readyz. */
export async function startCredentialsHttp(opts: {
  port: number;
  host: string;
  consent: Consent;
  ready: () => Promise<boolean>;
  logger: Logger;
  /** Certificate and key (RELAY_TLS_CERT / RELAY_TLS_KEY): HTTPS when given. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
}): Promise<CredentialsHttp> {
  const handler: RequestListener = (req, res) => {
    const send = (status: number, body: string, type: 'text' | 'html' = 'text') => {
      if (res.headersSent) return;
      res.writeHead(status, { ...PAGE_HEADERS, 'content-type': type === 'html' ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8' });
      res.end(body.endsWith('\n') ? body : `${body}\n`);
    };
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (req.method !== 'GET') return send(405, 'method not allowed');
      if (url.pathname === '/healthz') return send(200, 'ok');
      if (url.pathname === '/readyz') {
        const ok = await opts.ready().catch(() => false);
        return send(ok ? 200 : 503, ok ? 'ready' : 'not ready');
      }
      if (url.pathname === '/oauth/callback') {
        const r = await opts.consent.callback(url.searchParams);
        return send(r.status, callbackPage(r.status, r.message), 'html');
      }
      send(404, 'not found');
    })().catch((err: unknown) => {
      opts.logger.error({ err: (err as Error).message }, 'http request failed');
      send(500, 'internal error');
    });
  };
  const server: Server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createServer(handler);
  return listenHttp(server, opts.port, opts.host);
}
