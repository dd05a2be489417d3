import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { listenHttp, type Logger } from '@relay/telemetry';
import type { Consent } from './consent.js';

export interface CredentialsHttp {
  port: number;
  close(): Promise<void>;
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
    const send = (status: number, body: string) => {
      if (res.headersSent) return;
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
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
        return send(r.status, r.message);
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
