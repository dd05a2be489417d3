/** Any of these says where (or whether) to export telemetry. */
const OTEL_EXPORT = /^OTEL_(SDK_DISABLED|TRACES_EXPORTER|METRICS_EXPORTER|EXPORTER_OTLP_(TRACES_|METRICS_)?ENDPOINT)$/;

/**
 * Export is off unless an OTEL_* setting names an exporter or a collector. The SDK's own default
 * (OTLP to localhost:4318) makes every message's spans and then retries sending them to a collector
 * that is usually not there; Prometheus `/metrics` is served either way.
 */
export function exportDefaults(env: NodeJS.ProcessEnv): Record<string, string> {
  if (Object.keys(env).some((k) => OTEL_EXPORT.test(k) && env[k]?.trim())) return {};
  return { OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' };
}
