import {
  clientEntry,
  FAST_DELIVERY,
  newClient,
  type OtlpReceiver,
  queuedId,
  type ReceivedSpan,
  smtpSender,
  type Stack,
  startOtlpReceiver,
  startSmtpServer,
  startStack,
  submit,
  testCa,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const RECEIVER = { user: 'relay@campus.example', password: 'receiver-secret' };
const J1 = { user: 'j1@campus.example', pass: 'j1 app password' };
const j1 = newClient('j1', ['registrar']);

let otlp: OtlpReceiver;
let receiver: TestSmtpServer;
let stack: Stack;

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  receiver = await startSmtpServer({ security: 'starttls', users: { [RECEIVER.user]: RECEIVER.password } });
  stack = await startStack({
    label: 'smtp-trace',
    config: {
      clients: [{ ...clientEntry(j1), smtp: { username: J1.user, password: J1.pass } }],
      senders: [smtpSender({ id: 'registrar', from: 'registrar@campus.example', server: receiver, auth: RECEIVER })],
      delivery: FAST_DELIVERY,
    },
    env: {
      RELAY_SMTP_PORT: '0',
      RELAY_TLS_CERT: testCa().certFile,
      RELAY_TLS_KEY: testCa().keyFile,
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '50',
    },
  });
});

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([receiver?.close(), otlp?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

const describeSpans = (spans: ReceivedSpan[]) => spans.map((s) => `${s.service} "${s.name}" ${s.spanId} <- ${s.parentSpanId || '(root)'}`).join('\n');

describe('SMTP door tracing', () => {
  it('one SERVER span per SMTP transaction, continued through the pipeline to the sent message', async () => {
    const raw = Buffer.from('From: registrar@campus.example\r\nTo: ada@students.campus.example\r\nSubject: traced over SMTP\r\n\r\nhello\r\n');
    const res = await submit({
      port: stack.ingest.ports.smtp!,
      security: 'starttls',
      auth: J1,
      envelope: { from: 'registrar@campus.example', to: ['ada@students.campus.example'] },
      raw,
    });
    if (!res.ok) throw new Error(res.response);
    const mail = await waitForMail(receiver, queuedId(res.response));
    const traceId = /^traceparent: 00-([0-9a-f]{32})-/m.exec(mail.raw.toString('latin1'))?.[1];
    expect(traceId).toBeDefined();
    const spans = await otlp.waitForTrace(
      traceId!,
      (t) => t.some((s) => s.service === 'relay-smtp-sender' && s.name === 'smtp send') && t.some((s) => s.name === 'smtp submit'),
    );
    const roots = spans.filter((s) => s.parentSpanId === '');
    expect(
      roots.map((s) => [s.service, s.name, s.kind]),
      describeSpans(spans),
    ).toEqual([['relay-ingest', 'smtp submit', 2]]);
    expect(roots[0]!.attributes).toMatchObject({ 'relay.door': 'smtp', 'relay.client': 'j1', 'relay.sender': 'registrar' });
    // GetMessage names the trace, for the console's link to it.
    expect((await stack.client(j1.apiKey).getMessage(queuedId(res.response))).traceId).toBe(traceId);
    const ids = new Set(spans.map((s) => s.spanId));
    expect(
      spans.filter((s) => s.parentSpanId !== '' && !ids.has(s.parentSpanId)),
      describeSpans(spans),
    ).toEqual([]);
  });
});
