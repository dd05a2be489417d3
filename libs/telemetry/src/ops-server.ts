import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { openTelemetryMetricsText } from './state.js';

export interface OpsServerOptions {
  port: number;
  host: string;
  /** Resolves true when the service can do its work (connected to NATS, Redis, ...). */
  ready: () => Promise<boolean> | boolean;
  /** Prometheus text of the service's own hand-made metrics, served ahead of the OpenTelemetry ones. */
  metrics?: () => Promise<string> | string;
}

export interface OpsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * /healthz (alive), /readyz (dependencies up) and /metrics (the service's OpenTelemetry metrics in
 * Prometheus text, after any hand-made ones) on the service's metrics port.
 */
export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz') return send(200, 'ok\n');
      if (path === '/readyz') {
        const ok = await Promise.resolve(opts.ready()).catch(() => false);
        return send(ok ? 200 : 503, ok ? 'ready\n' : 'not ready\n');
      }
      if (path === '/metrics') {
        const own = opts.metrics ? await opts.metrics() : '';
        const otel = await openTelemetryMetricsText().catch(() => '');
        return send(200, own + otel, 'text/plain; version=0.0.4');
      }
      send(404, 'not found\n');
    })().catch(() => send(500, 'error\n'));
    function send(status: number, body: string, type = 'text/plain') {
      if (res.headersSent) return;
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    }
  });
  return listenHttp(server, opts.port, opts.host);
}

/** Listens on `host:port` (0: any free port) and returns the port and a close that ends keep-alive connections too. */
export async function listenHttp(server: Server, port: number, host: string): Promise<OpsServer> {
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
