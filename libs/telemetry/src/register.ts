/**
 * Loaded before a service with `node --import @relay/telemetry/register …/main.js` (or its
 * absolute path): installs the ESM instrumentation hook, then starts the OpenTelemetry SDK, so
 * that the modules the service imports afterwards (grpc-js, http, fetch) are instrumented.
 */
import { register } from 'node:module';
import { serviceNameFromArgv } from './service-name.js';

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
const { startTelemetry } = await import('./sdk.js');
startTelemetry(serviceNameFromArgv(process.argv));
