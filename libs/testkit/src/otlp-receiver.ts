import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server as GrpcServer, ServerCredentials, type ServiceDefinition, type handleUnaryCall } from '@grpc/grpc-js';
import { bindGrpc } from '@relay/proto';
import { decodeTraceRequest } from './otlp-protobuf.js';
import { Changes } from './wait.js';

/** How an export reached the receiver: OTEL_EXPORTER_OTLP_PROTOCOL http/json, http/protobuf or grpc. */
export type OtlpEncoding = 'json' | 'protobuf' | 'grpc';

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
  /** `http://127.0.0.1:<port>`, for OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL http/json or http/protobuf. */
  url: string;
  /** `http://127.0.0.1:<port>` of the OTLP/gRPC receiver, for OTEL_EXPORTER_OTLP_PROTOCOL=grpc. */
  grpcUrl: string;
  /** Export requests received so far, by signal and encoding. */
  exports: Record<'traces' | 'metrics', Record<OtlpEncoding, number>>;
  /** Every span received so far. */
  spans: ReceivedSpan[];
  /** The spans of one trace. */
  trace(traceId: string): ReceivedSpan[];
  /** Resolves with the spans of `traceId` once `check` accepts them; rejects after `timeoutMs`. */
  waitForTrace(traceId: string, check: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Raw OTLP/JSON metric exports received, newest last (protobuf and gRPC ones are only counted in `exports`). */
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

function tracesFromJson(body: TracesRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const service = String(attributes(rs.resource?.attributes)['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
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
  return out;
}

/** An OTLP collector service (TraceService, MetricsService) whose Export takes the raw request bytes. */
function rawExportService(path: string): ServiceDefinition {
  return {
    Export: {
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      // An empty Export*ServiceResponse: full success.
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (b: Buffer) => b,
    },
  } as ServiceDefinition;
}

/**
 * A local OTLP receiver that keeps what services export, over OTLP/HTTP (JSON or protobuf, on
 * `url`) and OTLP/gRPC (on `grpcUrl`): traces as spans, JSON metric exports as the raw requests,
 * and a count of every export by encoding. Stands in for a collector in end-to-end tests.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const metrics: unknown[] = [];
  const exports: OtlpReceiver['exports'] = { traces: { json: 0, protobuf: 0, grpc: 0 }, metrics: { json: 0, protobuf: 0, grpc: 0 } };
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
      const type = req.headers['content-type'] ?? '';
      if (type.includes('protobuf')) {
        const bytes = Buffer.concat(chunks);
        if (path === '/v1/traces') {
          try {
            spans.push(...decodeTraceRequest(bytes));
          } catch {
            res.writeHead(400).end();
            return;
          }
          exports.traces.protobuf++;
        } else if (path === '/v1/metrics') exports.metrics.protobuf++;
        // An empty Export*ServiceResponse: full success.
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
        changes.notify();
        return;
      }
      if (!type.includes('json')) {
        res.writeHead(415, { 'content-type': 'text/plain' }).end('this test receiver takes OTLP/JSON or OTLP/protobuf\n');
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
        spans.push(...tracesFromJson(body as TracesRequest));
        exports.traces.json++;
      } else if (path === '/v1/metrics') {
        metrics.push(body);
        exports.metrics.json++;
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

  const grpc = new GrpcServer();
  const onTraces: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
    try {
      spans.push(...decodeTraceRequest(call.request));
    } catch (err) {
      callback({ code: 3, details: `not an ExportTraceServiceRequest: ${(err as Error).message}` });
      return;
    }
    exports.traces.grpc++;
    callback(null, Buffer.alloc(0));
    changes.notify();
  };
  const onMetrics: handleUnaryCall<Buffer, Buffer> = (_call, callback) => {
    exports.metrics.grpc++;
    callback(null, Buffer.alloc(0));
    changes.notify();
  };
  grpc.addService(rawExportService('/opentelemetry.proto.collector.trace.v1.TraceService/Export'), { Export: onTraces });
  grpc.addService(rawExportService('/opentelemetry.proto.collector.metrics.v1.MetricsService/Export'), { Export: onMetrics });
  const grpcPort = await bindGrpc(grpc, '127.0.0.1:0', ServerCredentials.createInsecure());
  const grpcUrl = `http://127.0.0.1:${grpcPort}`;
  const traceOf = (id: string) => spans.filter((s) => s.traceId === id);
  return {
    url,
    grpcUrl,
    exports,
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
        () =>
          new Error(
            `trace ${traceId} not complete within ${timeoutMs} ms; spans so far:\n${traceOf(traceId)
              .map((s) => `${s.service} ${s.name} ${s.spanId} <- ${s.parentSpanId}`)
              .join('\n')}`,
          ),
      );
    },
    close: async () => {
      grpc.forceShutdown();
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
