/**
 * Loaded before a service with `node --import @relay/telemetry/register …/main.js` (or its
 * absolute path): installs the ESM instrumentation hook, then starts the OpenTelemetry SDK, so
 * that the modules the service imports afterwards (grpc-js, http, fetch) are instrumented. Loaded
 * a second time (by main.js, after `--import`), it does nothing.
 */
import { register } from 'node:module';
import { serviceNameFromArgv } from './service-name.js';
import { telemetryHandle } from './state.js';

if (!telemetryHandle()) {
  // Only grpc-js needs the ESM hook (node:http and fetch are instrumented without it); hooking
  // every module would cost each service about half a second more at start.
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, { data: { include: ['@grpc/grpc-js'] } });
  const { startTelemetry } = await import('./sdk.js');
  startTelemetry(serviceNameFromArgv(process.argv));
}
