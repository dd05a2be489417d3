import { randomBytes } from 'node:crypto';
import {
  dropBus,
  internalToken,
  masterKey,
  serviceTestEnv,
  spawnService,
  startOtlpReceiver,
  testNatsUrl,
  testRedisUrl,
  uniquePrefix,
  writeConfig,
  type OtlpEncoding,
  type OtlpReceiver,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Each OTLP protocol an operator may choose with OTEL_EXPORTER_OTLP_PROTOCOL reaches a receiver:
 * a request to ingest's public HTTP port carrying a caller's traceparent yields the service's
 * server span in the caller's trace, and metrics are exported too. (The whole-pipeline trace is
 * checked over http/json in telemetry.test.ts; this checks the encodings and transports.)
 */
let receiver: OtlpReceiver;
const prefixes: string[] = [];

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterAll(async () => {
  await receiver?.close();
  for (const p of prefixes) await dropBus(p);
});

const cases: Array<{ protocol: string; encoding: OtlpEncoding }> = [
  { protocol: 'http/protobuf', encoding: 'protobuf' },
  { protocol: 'grpc', encoding: 'grpc' },
  { protocol: 'http/json', encoding: 'json' },
];

describe('OTLP export protocols', () => {
  it.each(cases)(
    "$protocol: spans join the caller's trace, with service.name, and metrics arrive",
    async ({ protocol, encoding }) => {
      const prefix = uniquePrefix('otlp');
      prefixes.push(prefix);
      const tracesBefore = receiver.exports.traces[encoding];
      const metricsBefore = receiver.exports.metrics[encoding];
      const env = {
        RELAY_CONFIG: writeConfig({
          clients: [{ name: 'app', api_key: 'otlp-test-key-0123456789abcdef0123456789', senders: ['app'] }],
          senders: [{ id: 'app', from: 'app@campus.example', transport: 'smtp', smtp: { host: '127.0.0.1', port: 2587, security: 'none' } }],
        }),
        NATS_URL: testNatsUrl(),
        REDIS_URL: testRedisUrl(),
        RELAY_BUS_PREFIX: prefix,
        RELAY_MASTER_KEY: masterKey(),
        RELAY_INTERNAL_TOKEN: internalToken(),
        RELAY_HOST: '127.0.0.1',
        RELAY_CREDENTIALS_PORT: '0',
        RELAY_HTTP_PORT: '0',
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        OTEL_EXPORTER_OTLP_ENDPOINT: encoding === 'grpc' ? receiver.grpcUrl : receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '50',
        OTEL_METRIC_EXPORT_INTERVAL: '500',
      };
      // Credentials holds the pending sign-ins; ingest serves the callback and relays it there.
      const credentials = await spawnService('credentials', { env });
      const ingest = await spawnService('ingest', {
        env: { ...serviceTestEnv('ingest'), ...env, RELAY_GRPC_PORT: '0', RELAY_CREDENTIALS_ADDR: `127.0.0.1:${credentials.ports.grpc}` },
      }).catch(async (err: unknown) => {
        await credentials.stop();
        throw err;
      });
      try {
        const traceId = randomBytes(16).toString('hex');
        const callerSpan = randomBytes(8).toString('hex');
        // A forged consent state: refused (4xx), and traced like any other request.
        const res = await fetch(`http://127.0.0.1:${ingest.ports.http}/oauth/callback?state=forged&code=x`, {
          headers: { traceparent: `00-${traceId}-${callerSpan}-01` },
        });
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        const spans = await receiver.waitForTrace(traceId, (t) => t.some((s) => s.parentSpanId === callerSpan), 15_000);
        const server = spans.find((s) => s.parentSpanId === callerSpan)!;
        expect(server.service).toBe('relay-ingest');
        expect(server.kind).toBe(2); // SERVER
        expect(server.spanId).toMatch(/^[0-9a-f]{16}$/);
        expect(server.attributes['url.path']).toBe('/oauth/callback');
        // The OAuth state and code are secrets: never in a span.
        expect(server.attributes['url.query']).toBe('state=REDACTED&code=REDACTED');
        expect(JSON.stringify(spans)).not.toContain('forged');
        expect(receiver.exports.traces[encoding]).toBeGreaterThan(tracesBefore);
        const deadline = Date.now() + 10_000;
        while (receiver.exports.metrics[encoding] <= metricsBefore) {
          if (Date.now() > deadline) throw new Error(`no metrics export over ${protocol} within 10 s`);
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        expect((await ingest.stop()).code).toBe(0);
        expect((await credentials.stop()).code).toBe(0);
      }
    },
    40_000,
  );
});
