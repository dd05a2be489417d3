import { diag } from '@opentelemetry/api';
import { getStringFromEnv, getStringListFromEnv } from '@opentelemetry/core';
import { OTLPMetricExporter as OtlpGrpcMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as OtlpJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OtlpProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { ConsoleMetricExporter, PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { exportDefaults } from '@relay/core';
import { setTelemetryHandle, telemetryHandle } from './state.js';

/** Query parameters never recorded on HTTP spans: the instrumentation's defaults plus OAuth's. */
const SECRET_QUERY_PARAMS = [
  'sig',
  'Signature',
  'AWSAccessKeyId',
  'X-Goog-Signature',
  'code',
  'state',
  'session_state',
  'client_info',
  'access_token',
  'refresh_token',
  'id_token',
  'client_secret',
  'token',
  'authtoken',
  'tempauth',
];

/**
 * Starts the OpenTelemetry SDK for this process, configured by the standard OTEL_* variables:
 * traces per OTEL_TRACES_EXPORTER (otlp over OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf, http/json
 * or grpc; console; none) and OTEL_TRACES_SAMPLER, metrics per OTEL_METRICS_EXPORTER, plus a
 * Prometheus reader that the service's ops server answers `/metrics` from (no server of its own).
 */
export function startTelemetry(serviceName: string | undefined): void {
  if (telemetryHandle()) return;
  Object.assign(process.env, exportDefaults(process.env));
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const sdk = new NodeSDK({
    ...(serviceName ? { serviceName } : {}),
    metricReaders: [prometheus, ...metricReadersFromEnv()],
    // The services log with pino to stdout; no OpenTelemetry log records are made.
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({
        // Health probes and scrapes are not worth a trace each.
        ignoreIncomingRequestHook: (req) => /^\/(healthz|readyz|metrics)\b/.test(req.url ?? ''),
        // The OAuth redirect brings an authorization code; token requests may carry secrets.
        redactedQueryParams: SECRET_QUERY_PARAMS,
        redactedQueryParamsServer: SECRET_QUERY_PARAMS,
      }),
      new UndiciInstrumentation({
        // Graph upload session URLs are pre-authenticated: no query string goes into a span.
        requestHook: (span, req) => {
          const q = req.path.indexOf('?');
          if (q >= 0) span.setAttributes({ 'url.full': `${req.origin}${req.path.slice(0, q)}?REDACTED`, 'url.query': 'REDACTED' });
        },
      }),
      // gRPC's only makes spans (the others also make the HTTP duration metrics): with tracing off
      // it would wrap every call for nothing, on the busiest path ingest has. A
      // caller's traceparent is then not carried on either.
      ...(tracingOff() ? [] : [new GrpcInstrumentation({ ignoreGrpcMethods: ['Check', 'Watch'] })]),
    ],
  });
  sdk.start();
  const serializer = new PrometheusSerializer();
  let stopping: Promise<void> | undefined;
  setTelemetryHandle({
    async metricsText() {
      const { resourceMetrics } = await prometheus.collect();
      return serializer.serialize(resourceMetrics);
    },
    shutdown: () => (stopping ??= sdk.shutdown().catch((err: unknown) => diag.error('telemetry shutdown failed', err))),
  });
}

/** OTEL_METRICS_EXPORTER as the SDK reads it (default otlp); `prometheus` is served by the ops server. */
function metricReadersFromEnv(): IMetricReader[] {
  const names = new Set(getStringListFromEnv('OTEL_METRICS_EXPORTER') ?? ['otlp']);
  if (names.has('none')) return [];
  const readers: IMetricReader[] = [];
  for (const name of names) {
    if (name === 'otlp') readers.push(periodic(otlpMetricExporter()));
    else if (name === 'console') readers.push(periodic(new ConsoleMetricExporter()));
    else if (name !== 'prometheus') diag.warn(`OTEL_METRICS_EXPORTER: unsupported value "${name}" (otlp, console, prometheus, none)`);
  }
  return readers;
}

function periodic(exporter: PushMetricExporter): IMetricReader {
  const interval = Number(getStringFromEnv('OTEL_METRIC_EXPORT_INTERVAL') ?? 60_000);
  const timeout = Math.min(Number(getStringFromEnv('OTEL_METRIC_EXPORT_TIMEOUT') ?? 30_000), interval);
  return new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: interval, exportTimeoutMillis: timeout });
}

function otlpMetricExporter(): PushMetricExporter {
  const protocol = (getStringFromEnv('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL') ?? getStringFromEnv('OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/protobuf').trim();
  if (protocol === 'grpc') return new OtlpGrpcMetricExporter();
  if (protocol === 'http/json') return new OtlpJsonMetricExporter();
  if (protocol !== 'http/protobuf') diag.warn(`OTEL_EXPORTER_OTLP_PROTOCOL: unsupported value "${protocol}"; using http/protobuf`);
  return new OtlpProtoMetricExporter();
}

/** OTEL_TRACES_EXPORTER=none (and nothing else), or the SDK disabled altogether. */
export function tracingOff(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return true;
  const names = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter(Boolean);
  return names.length > 0 && names.every((n) => n === 'none');
}
