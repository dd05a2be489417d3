import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Changes } from './wait.js';

/** One span as an OTLP/JSON export carries it, with its service's name. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>`, for OTEL_EXPORTER_OTLP_ENDPOINT (with OTEL_EXPORTER_OTLP_PROTOCOL=http/json). */
  url: string;
  /** Every span received so far. */
  spans: ReceivedSpan[];
  /** The spans of one trace. */
  trace(traceId: string): ReceivedSpan[];
  /** Resolves with the spans of `traceId` once `check` accepts them; rejects after `timeoutMs`. */
  waitForTrace(traceId: string, check: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Raw OTLP/JSON metric exports received, newest last. */
  metrics: unknown[];
  close(): Promise<void>;
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  attributes?: KeyValue[];
  status?: { code?: number };
}
interface TracesRequest {
  resourceSpans?: Array<{ resource?: { attributes?: KeyValue[] }; scopeSpans?: Array<{ spans?: OtlpSpan[] }> }>;
}

function attributes(kvs: KeyValue[] = []): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of kvs) {
    if (!value) continue;
    const v = value.stringValue ?? value.boolValue ?? value.doubleValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/**
 * A local OTLP/HTTP receiver (JSON encoding) that keeps what services export: `/v1/traces` as
 * spans, `/v1/metrics` as the raw requests. Stands in for a collector in end-to-end tests.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const metrics: unknown[] = [];
  const changes = new Changes();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'POST' || (path !== '/v1/traces' && path !== '/v1/metrics' && path !== '/v1/logs')) {
        res.writeHead(404).end();
        return;
      }
      if (!(req.headers['content-type'] ?? '').includes('json')) {
        res.writeHead(415, { 'content-type': 'text/plain' }).end('this test receiver takes OTLP/JSON only (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)\n');
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (path === '/v1/traces') {
        for (const rs of (body as TracesRequest).resourceSpans ?? []) {
          const service = String(attributes(rs.resource?.attributes)['service.name'] ?? '');
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              spans.push({
                service,
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId ?? '',
                name: s.name,
                kind: s.kind ?? 0,
                attributes: attributes(s.attributes),
                statusCode: s.status?.code ?? 0,
              });
            }
          }
        }
      } else if (path === '/v1/metrics') {
        metrics.push(body);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      changes.notify();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const traceOf = (id: string) => spans.filter((s) => s.traceId === id);
  return {
    url,
    spans,
    metrics,
    trace: traceOf,
    waitForTrace(traceId, check, timeoutMs = 20_000) {
      return changes.until(
        () => {
          const t = traceOf(traceId);
          return check(t) ? t : undefined;
        },
        timeoutMs,
        () => new Error(`trace ${traceId} not complete within ${timeoutMs} ms; spans so far:\n${traceOf(traceId).map((s) => `${s.service} ${s.name} ${s.spanId} <- ${s.parentSpanId}`).join('\n')}`),
      );
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
