/**
 * Loaded before a service with `node --import @relay/telemetry/register …/main.js` (or its
 * absolute path): installs the ESM instrumentation hook, then starts the OpenTelemetry SDK, so
 * that the modules the service imports afterwards (grpc-js, http, fetch) are instrumented. Loaded
 * a second time (by main.js, after `--import`), it does nothing.
 */
import { createRequire, register } from 'node:module';
import { exitWithParentWhileStarting } from '@relay/core';
import { serviceNameFromArgv } from './service-name.js';
import { telemetryHandle } from './state.js';

if (!telemetryHandle()) {
  // First: a supervisor killed while this service starts must not leave it running.
  exitWithParentWhileStarting(process);
  // Only grpc-js needs the ESM hook; hooking every module would cost each service about half a
  // second more at start. fetch is instrumented through diagnostics channels.
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, { data: { include: ['@grpc/grpc-js'] } });
  const { startTelemetry } = await import('./sdk.js');
  startTelemetry(serviceNameFromArgv(process.argv));
  // The HTTP instrumentation patches node:http (Server.prototype.emit, shared with the ESM
  // `import { createServer } from 'node:http'` the services use) when the module is required
  // after the SDK started; services only import it, so require it once here, or incoming
  // requests such as the OAuth callback would have no span.
  const require = createRequire(import.meta.url);
  require('node:http');
  require('node:https');
}
