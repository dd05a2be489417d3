import { randomBytes } from 'node:crypto';
import { startOtlpReceiver, startSmtpServer, type OtlpReceiver, type ReceivedSpan, type TestSmtpServer } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestClient } from './support/grpc-client.js';
import { clientEntry, FAST_DELIVERY, newClient, smtpSender, waitForMail, waitForState } from './support/relay.js';
import { startStack, uncleanExits, type Stack } from './support/stack.js';
import { MessageState } from '@relay/proto';

const SMTP_USER = 'no-reply@campus.example';
const SMTP_PASSWORD = 'correct horse battery staple';

/** Every service exports to the receiver over OTLP/HTTP JSON, spans in small quick batches. */
export function otlpEnv(receiver: OtlpReceiver): Record<string, string> {
  return {
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '50',
    OTEL_METRIC_EXPORT_INTERVAL: '500',
  };
}

/** A caller's span: a fresh trace id and span id, and the traceparent header naming them. */
export function callerSpan() {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** Spans whose parent is neither in the trace nor the caller's span: a break in the trace. */
export function orphans(spans: ReceivedSpan[], callerSpanId: string): ReceivedSpan[] {
  const ids = new Set(spans.map((s) => s.spanId));
  return spans.filter((s) => s.parentSpanId !== callerSpanId && !ids.has(s.parentSpanId));
}

export function services(spans: ReceivedSpan[]): Set<string> {
  return new Set(spans.map((s) => s.service));
}

const describeSpans = (spans: ReceivedSpan[]) => spans.map((s) => `${s.service} "${s.name}" ${s.spanId} <- ${s.parentSpanId || '(root)'}`).join('\n');

let receiver: OtlpReceiver;
let smtp: TestSmtpServer;
let stack: Stack;
let client: TestClient;
const app = newClient('billing-app', ['no-reply']);
let refused = false;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  smtp = await startSmtpServer({
    security: 'starttls',
    users: { [SMTP_USER]: SMTP_PASSWORD },
    // A subject asking for it gets one temporary refusal first, so the message is retried.
    reply: (ctx) => {
      if (ctx.phase !== 'data' || !ctx.raw.includes('Subject: retry once') || refused) return undefined;
      refused = true;
      return { code: 451, message: '4.3.0 try again later' };
    },
  });
  stack = await startStack({
    label: 'telemetry',
    config: {
      clients: [clientEntry(app)],
      senders: [smtpSender({ id: 'no-reply', server: smtp, auth: { user: SMTP_USER, password: SMTP_PASSWORD } })],
      delivery: FAST_DELIVERY,
    },
    env: otlpEnv(receiver),
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([smtp?.close(), receiver?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

describe('one trace per message', () => {
  it('continues the caller\'s traceparent through ingest, scheduler, smtp-sender and credentials, and into the sent message', async () => {
    const caller = callerSpan();
    const res = await client.sendMail({ sender: 'no-reply', to: ['ada@students.campus.example'], subject: 'traced', text: 'hello' }, { traceparent: caller.traceparent });
    const mail = await waitForMail(smtp, res.messageId);

    const spans = await receiver.waitForTrace(
      caller.traceId,
      (t) => ['relay-ingest', 'relay-scheduler', 'relay-smtp-sender', 'relay-credentials'].every((s) => services(t).has(s)) && t.some((s) => s.name === 'smtp send') && orphans(t, caller.spanId).length === 0,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\nall spans:\n${describeSpans(receiver.spans)}`);
    });
    expect(orphans(spans, caller.spanId), describeSpans(spans)).toEqual([]);
    // The caller's span has exactly one child: ingest's SendMail server span.
    const roots = spans.filter((s) => s.parentSpanId === caller.spanId);
    expect(roots.map((s) => [s.service, s.name])).toEqual([['relay-ingest', 'grpc.relay.v1.MailService/SendMail']]);
    expect(roots[0]!.attributes['relay.message.id']).toBe(res.messageId);

    // The JetStream hops, after the messaging conventions: a producer span per publish and a
    // consumer span per processed message, in the scheduler and in the sender.
    const producers = spans.filter((s) => s.kind === 4);
    expect(producers.map((s) => s.attributes['messaging.destination.name'])).toEqual(
      expect.arrayContaining([`${stack.prefix}.submitted.no-reply`, `${stack.prefix}.dispatch.smtp.no-reply`]),
    );
    const scheduled = spans.find((s) => s.service === 'relay-scheduler' && s.kind === 5);
    expect(scheduled?.attributes).toMatchObject({ 'messaging.system': 'nats', 'relay.schedule.decision': 'dispatch', 'relay.message.id': res.messageId });
    expect(typeof scheduled?.attributes['relay.pacing.wait_ms']).toBe('number');
    expect(spans.some((s) => s.service === 'relay-smtp-sender' && s.kind === 5 && s.attributes['relay.outcome'] === 'sent')).toBe(true);
    expect(spans.some((s) => s.service === 'relay-credentials' && s.kind === 2)).toBe(true);

    // The message names the SMTP span in its traceparent header.
    const smtpSpan = spans.find((s) => s.name === 'smtp send')!;
    expect(mail.parsed.headers.get('traceparent')).toBe(`00-${caller.traceId}-${smtpSpan.spanId}-01`);
    // No secret in any span attribute.
    expect(JSON.stringify(receiver.spans)).not.toContain(SMTP_PASSWORD);
  });

  it('continues the same trace through a retry', async () => {
    const caller = callerSpan();
    const res = await client.sendMail({ sender: 'no-reply', to: ['bob@students.campus.example'], subject: 'retry once', text: 'hello' }, { traceparent: caller.traceparent });
    await waitForState(client, res.messageId, [MessageState.SENT]);
    const spans = await receiver.waitForTrace(
      caller.traceId,
      // The retry goes back through the scheduler (which may park it for its backoff first).
      (t) => t.filter((s) => s.name === 'smtp send').length === 2 && t.some((s) => s.attributes['relay.outcome'] === 'sent') && orphans(t, caller.spanId).length === 0,
    );
    const outcomes = spans.filter((s) => s.service === 'relay-smtp-sender' && s.kind === 5).map((s) => s.attributes['relay.outcome']);
    expect(outcomes.sort()).toEqual(['retrying', 'sent']);
    // The retry was published by the sender, inside the failed attempt's span.
    const failed = spans.find((s) => s.attributes['relay.outcome'] === 'retrying')!;
    expect(spans.some((s) => s.kind === 4 && s.parentSpanId === failed.spanId && s.attributes['messaging.destination.name'] === `${stack.prefix}.submitted.no-reply`)).toBe(true);
    expect(orphans(spans, caller.spanId)).toEqual([]);
  });

  it('starts a trace in ingest when the caller sends no traceparent', async () => {
    const res = await client.sendMail({ sender: 'no-reply', to: ['cy@students.campus.example'], subject: 'untraced', text: 'hello' });
    const mail = await waitForMail(smtp, res.messageId);
    const traceId = /^00-([0-9a-f]{32})-[0-9a-f]{16}-0[01]$/.exec(String(mail.parsed.headers.get('traceparent')))?.[1];
    expect(traceId).toBeDefined();
    const spans = await receiver.waitForTrace(traceId!, (t) => t.some((s) => s.name === 'smtp send') && orphans(t, '').length === 0);
    expect(spans.filter((s) => s.parentSpanId === '').map((s) => s.service)).toEqual(['relay-ingest']);
  });
});
