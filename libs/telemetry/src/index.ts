export * from './logger.js';
export * from './ops-server.js';
export * from './log-context.js';
export * from './instruments.js';
export * from './token-refresh.js';
export * from './grpc-health.js';
export { shutdownTelemetry, openTelemetryMetricsText, TELEMETRY_DEFAULTS } from './state.js';
export { serviceNameFromArgv } from './service-name.js';
