import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MessageState } from '@relay/proto';
import {
  clientEntry,
  FAST_DELIVERY,
  newClient,
  smtpSender,
  type Stack,
  startSmtpServer,
  startStack,
  type TestSmtpServer,
  uncleanExits,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** Far longer than the stack's stop waits before it SIGKILLs a service (libs/testkit/src/stack.ts). */
const HANG_MS = '600000';

/** An OTLP/HTTP collector that takes every export request and never answers it. */
async function startSilentCollector(): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server: Server = createServer((req) => {
    requests.push(req.url ?? '');
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let smtp: TestSmtpServer;
let collector: Awaited<ReturnType<typeof startSilentCollector>>;
let stack: Stack | undefined;
const app = newClient('quick-stop-app', ['no-reply']);

beforeAll(async () => {
  smtp = await startSmtpServer({ security: 'starttls' });
  collector = await startSilentCollector();
});

afterAll(async () => {
  await stack?.stop();
  await collector?.close();
  await smtp?.close();
});

describe('stopping after mail has flowed', () => {
  it('does not wait for a collector that does not answer: every service exits cleanly at once', { timeout: 90_000 }, async () => {
    stack = await startStack({
      label: 'quick-stop',
      config: { clients: [clientEntry(app)], senders: [smtpSender({ id: 'no-reply', server: smtp })], delivery: FAST_DELIVERY },
      env: {
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        // The message's spans and the metrics stay buffered until the stop, whose export then hangs
        // for longer than the test waits, unless the stop gives up on it.
        OTEL_BSP_SCHEDULE_DELAY: HANG_MS,
        OTEL_BSP_EXPORT_TIMEOUT: HANG_MS,
        OTEL_EXPORTER_OTLP_TIMEOUT: HANG_MS,
        OTEL_METRIC_EXPORT_INTERVAL: HANG_MS,
        OTEL_METRIC_EXPORT_TIMEOUT: HANG_MS,
      },
    });
    const client = stack.client(app.apiKey);
    const res = await client.sendMail({ sender: 'no-reply', to: ['ada@students.campus.example'], subject: 'before the stop', text: 'hi' });
    await waitForState(client, res.messageId, [MessageState.SENT]);

    const results = await stack.stop();
    stack = undefined;
    // Each exited by itself with code 0, not SIGKILLed after the stack's stop timeout...
    expect(uncleanExits(results)).toEqual([]);
    // ...while the collector still held the exports of the message's spans, never answered.
    expect(collector.requests.filter((u) => u === '/v1/traces').length).toBeGreaterThan(0);
    const gaveUp = results.filter((r) => r.logs.some((l) => l.includes('not exported in time')));
    expect(gaveUp.map((r) => r.name)).toEqual(expect.arrayContaining(['ingest', 'scheduler', 'smtp-sender']));
  });
});
