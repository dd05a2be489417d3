import { randomBytes } from 'node:crypto';
import { busNames } from '@relay/bus';
import { MessageState } from '@relay/proto';
import { checkGrpcHealth } from '@relay/telemetry';
import {
  clientEntry,
  FAST_DELIVERY,
  type GraphFake,
  hasNatsServer,
  type IdentityFake,
  NATS_SERVER_BIN,
  newClient,
  type OtlpReceiver,
  type PrivateNats,
  type ReceivedSpan,
  type ServiceProcess,
  sleep,
  smtpSender,
  type Stack,
  startGraphFake,
  startIdentityFake,
  startOtlpReceiver,
  startPrivateNats,
  startSmtpServer,
  startStack,
  testCa,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SMTP_USER = 'no-reply@campus.example';
const SMTP_PASSWORD = 'correct horse battery staple';
const GRAPH_CLIENT = 'graph-app';
const GRAPH_SECRET = 'graph-client-secret-8Q~telemetry';
const MAILBOX = 'registrar@campus.example';

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
let idp: IdentityFake;
let graph: GraphFake;
const app = newClient('billing-app', ['no-reply', 'registrar', 'wrong-secret']);
let refused = false;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  smtp = await startSmtpServer({
    security: 'starttls',
    users: { [SMTP_USER]: SMTP_PASSWORD },
    // A subject asking for it gets one temporary refusal first, so the message is retried.
    reply: (ctx) => {
      if (ctx.phase === 'data' && ctx.raw.includes('Subject: refuse for good')) return { code: 550, message: '5.7.1 refused by policy' };
      if (ctx.phase !== 'data' || !ctx.raw.includes('Subject: retry once') || refused) return undefined;
      refused = true;
      return { code: 451, message: '4.3.0 try again later' };
    },
  });
  idp = await startIdentityFake({ clients: { [GRAPH_CLIENT]: GRAPH_SECRET }, appRoles: { [GRAPH_CLIENT]: ['Mail.Send'] } });
  graph = await startGraphFake({ identity: idp, mailboxes: { [MAILBOX]: {} } });
  stack = await startStack({
    label: 'telemetry',
    config: {
      clients: [clientEntry(app)],
      senders: [
        smtpSender({ id: 'no-reply', server: smtp, auth: { user: SMTP_USER, password: SMTP_PASSWORD } }),
        {
          id: 'registrar',
          from: MAILBOX,
          transport: 'graph',
          graph: {
            tenant_id: 'tenant-telemetry',
            client_id: GRAPH_CLIENT,
            client_secret: 'env:GRAPH_SECRET',
            mailbox: MAILBOX,
            authority_url: idp.url,
            graph_url: graph.url,
          },
        },
        {
          id: 'wrong-secret',
          from: MAILBOX,
          transport: 'graph',
          graph: {
            tenant_id: 'tenant-telemetry',
            client_id: GRAPH_CLIENT,
            client_secret: 'not-the-secret',
            mailbox: MAILBOX,
            authority_url: idp.url,
            graph_url: graph.url,
          },
        },
      ],
      delivery: FAST_DELIVERY,
    },
    env: { ...otlpEnv(receiver), NODE_EXTRA_CA_CERTS: testCa().caFile, GRAPH_SECRET },
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([smtp?.close(), receiver?.close(), graph?.close(), idp?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

describe('one trace per message', () => {
  it("continues the caller's traceparent through ingest, scheduler, smtp-sender and credentials, and into the sent message", async () => {
    const caller = callerSpan();
    const res = await client.sendMail(
      { sender: 'no-reply', to: ['ada@students.campus.example'], subject: 'traced', text: 'hello' },
      { traceparent: caller.traceparent },
    );
    const mail = await waitForMail(smtp, res.messageId);

    const spans = await receiver
      .waitForTrace(
        caller.traceId,
        (t) =>
          ['relay-ingest', 'relay-scheduler', 'relay-smtp-sender', 'relay-credentials'].every((s) => services(t).has(s)) &&
          t.some((s) => s.name === 'smtp send') &&
          orphans(t, caller.spanId).length === 0,
      )
      .catch((err: unknown) => {
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
      expect.arrayContaining([busNames(stack.prefix).submittedSubject('no-reply'), `${stack.prefix}.dispatch.smtp.no-reply`]),
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

  it('continues the same trace through a retry, and logs it with the trace and message', async () => {
    const caller = callerSpan();
    const res = await client.sendMail(
      { sender: 'no-reply', to: ['bob@students.campus.example'], subject: 'retry once', text: 'hello' },
      { traceparent: caller.traceparent },
    );
    await waitForState(client, res.messageId, [MessageState.SENT]);
    const spans = await receiver.waitForTrace(
      caller.traceId,
      // The retry goes back through the scheduler (which may park it for its backoff first).
      (t) =>
        t.filter((s) => s.name === 'smtp send').length === 2 &&
        t.some((s) => s.attributes['relay.outcome'] === 'sent') &&
        orphans(t, caller.spanId).length === 0,
    );
    const outcomes = spans.filter((s) => s.service === 'relay-smtp-sender' && s.kind === 5).map((s) => s.attributes['relay.outcome']);
    expect(outcomes.sort()).toEqual(['retrying', 'sent']);
    // The retry was published by the sender, inside the failed attempt's span.
    const failed = spans.find((s) => s.attributes['relay.outcome'] === 'retrying')!;
    expect(
      spans.some(
        (s) =>
          s.kind === 4 &&
          s.parentSpanId === failed.spanId &&
          s.attributes['messaging.destination.name'] === busNames(stack.prefix).submittedSubject('no-reply'),
      ),
    ).toBe(true);
    // The sender's log line about the retry names the trace, the span, the message and the sender.
    const line = stack.smtpSenders[0]!.logs.find((l) => l.includes('"msg":"retrying"') && l.includes(res.messageId));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ trace_id: caller.traceId, span_id: failed.spanId, message_id: res.messageId, sender: 'no-reply' });
    expect(orphans(spans, caller.spanId)).toEqual([]);
  });

  it("continues it through the graph-sender's Graph calls and the credentials service's token refresh", async () => {
    const caller = callerSpan();
    const res = await client.sendMail(
      { sender: 'registrar', to: ['ada@students.campus.example'], subject: 'traced over Graph', text: 'hello' },
      { traceparent: caller.traceparent },
    );
    await waitForState(client, res.messageId, [MessageState.SENT]);
    const isGraphCall = (s: ReceivedSpan) => s.service === 'relay-graph-sender' && s.kind === 3 && String(s.attributes['url.full'] ?? '').startsWith(graph.url);
    const spans = await receiver
      .waitForTrace(
        caller.traceId,
        (t) =>
          ['relay-ingest', 'relay-scheduler', 'relay-graph-sender', 'relay-credentials'].every((s) => services(t).has(s)) &&
          t.some(isGraphCall) &&
          t.some((s) => s.name === 'token refresh') &&
          t.some((s) => s.service === 'relay-graph-sender' && s.kind === 5 && s.attributes['relay.outcome'] === 'sent') &&
          orphans(t, caller.spanId).length === 0,
      )
      .catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\nall spans:\n${describeSpans(receiver.spans)}`);
      });
    expect(spans.filter((s) => s.parentSpanId === caller.spanId).map((s) => s.service)).toEqual(['relay-ingest']);
    // A paced sender's first message is held by the intake (its pacing state is built on that first
    // look) and dispatched by the sender's lane: both are CONSUMER spans of the same trace.
    const scheduled = spans.filter((s) => s.service === 'relay-scheduler' && s.kind === 5);
    expect(scheduled.find((s) => s.attributes['relay.schedule.decision'] === 'dispatch')?.attributes).toMatchObject({ 'relay.transport': 'graph' });
    expect(scheduled.every((s) => ['hold', 'dispatch'].includes(String(s.attributes['relay.schedule.decision'])))).toBe(true);
    // The credentials service obtained the token for this message: its refresh span, and the
    // identity platform's token endpoint called from within the same trace.
    const refresh = spans.find((s) => s.name === 'token refresh')!;
    expect(refresh).toMatchObject({ service: 'relay-credentials', attributes: { 'relay.sender': 'registrar', 'relay.token.outcome': 'obtained' } });
    expect(spans.some((s) => s.service === 'relay-credentials' && s.kind === 3)).toBe(true);
    expect(JSON.stringify(receiver.spans)).not.toContain(GRAPH_SECRET);
    // Graph takes only x- headers: the message carries the trace as x-traceparent.
    const sentMessage = graph.sent.find((m) => m.message.subject === 'traced over Graph');
    const header = sentMessage?.message.internetMessageHeaders?.find((h) => h.name.toLowerCase() === 'x-traceparent');
    expect(header?.value).toMatch(new RegExp(`^00-${caller.traceId}-[0-9a-f]{16}-01$`));
    expect(sample(await metricsOf(stack.credentials), 'relay_token_refreshes_total', { sender: 'registrar' })).toBe(1);
    expect(sample(await metricsOf(stack.graphSender), 'relay_messages_sent_total', { sender: 'registrar', transport: 'graph' })).toBe(1);
    expect(sample(await metricsOf(stack.graphSender), 'relay_send_duration_seconds_count', { transport: 'graph', outcome: 'sent' })).toBe(1);
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

/** The value of one sample of a Prometheus text exposition; undefined when there is none. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function metricsOf(p: ServiceProcess): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${p.ports.metrics}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** Polls `check` until it returns a value (metrics are updated as the work finishes, not before GetMessage can see it). */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('metrics', () => {
  it('counts accepted, sent, failed, retrying, send latency and pacing waits per sender, and shows the queue', async () => {
    const before = {
      accepted: sample(await metricsOf(stack.ingest), 'relay_messages_accepted_total', { sender: 'no-reply' }) ?? 0,
      sent: sample(await metricsOf(stack.smtpSenders[0]!), 'relay_messages_sent_total', { sender: 'no-reply', transport: 'smtp' }) ?? 0,
      latency: sample(await metricsOf(stack.smtpSenders[0]!), 'relay_send_duration_seconds_count', { transport: 'smtp', outcome: 'sent' }) ?? 0,
      waits: sample(await metricsOf(stack.scheduler), 'relay_pacing_wait_seconds_count', { sender: 'no-reply' }) ?? 0,
    };
    const ids = [];
    for (let i = 0; i < 3; i++)
      ids.push((await client.sendMail({ sender: 'no-reply', to: [`m${i}@students.campus.example`], subject: `metrics ${i}`, text: 'x' })).messageId);
    const refused = (await client.sendMail({ sender: 'no-reply', to: ['x@students.campus.example'], subject: 'refuse for good', text: 'x' })).messageId;
    for (const id of ids) await waitForState(client, id, [MessageState.SENT]);
    await waitForState(client, refused, [MessageState.FAILED]);

    expect(sample(await metricsOf(stack.ingest), 'relay_messages_accepted_total', { sender: 'no-reply' })).toBe(before.accepted + 4);
    const sender = await eventually('3 more sends and a failure counted', async () => {
      const text = await metricsOf(stack.smtpSenders[0]!);
      const counted =
        sample(text, 'relay_messages_sent_total', { sender: 'no-reply', transport: 'smtp' }) === before.sent + 3 &&
        sample(text, 'relay_messages_failed_total', { sender: 'no-reply', transport: 'smtp' }) === 1;
      return counted ? text : undefined;
    });
    expect(sample(sender, 'relay_send_duration_seconds_count', { transport: 'smtp', outcome: 'sent' })).toBe(before.latency + 3);
    expect(sample(sender, 'relay_send_duration_seconds_count', { transport: 'smtp', outcome: 'permanent' })).toBe(1);
    expect(sender).toMatch(/^# TYPE relay_send_duration_seconds histogram$/m);
    // The retried message of the trace tests was counted once as retrying.
    expect(sample(sender, 'relay_messages_retrying_total', { sender: 'no-reply', transport: 'smtp' })).toBe(1);

    const scheduler = await metricsOf(stack.scheduler);
    expect(sample(scheduler, 'relay_pacing_wait_seconds_count', { sender: 'no-reply' })).toBe(before.waits + 4);
    // Nothing waits any more: the queue is empty and has no oldest message.
    expect(sample(scheduler, 'relay_queue_depth_messages', { sender: 'no-reply', stage: 'submitted' })).toBe(0);
    expect(sample(scheduler, 'relay_queue_depth_messages', { sender: 'no-reply', stage: 'dispatch' })).toBe(0);
    expect(sample(scheduler, 'relay_queue_oldest_age_seconds', { sender: 'no-reply' })).toBe(0);
    // The hand-made pacing metrics are still there, ahead of the OpenTelemetry ones.
    expect(sample(scheduler, 'relay_scheduler_backlog_messages', { sender: 'no-reply' })).toBe(0);
  });

  it('counts token refresh failures', async () => {
    const res = await client.sendMail({ sender: 'wrong-secret', to: ['ada@students.campus.example'], subject: 'no token', text: 'x' });
    // The identity platform refuses the secret; the attempt is not sent.
    await waitForState(client, res.messageId, [MessageState.RETRYING, MessageState.FAILED]);
    // Fails the test unless a failure is counted in time (a retry may have added more).
    await eventually('a token refresh failure counted', async () => {
      const n = sample(await metricsOf(stack.credentials), 'relay_token_refresh_failures_total', { sender: 'wrong-secret' });
      return n !== undefined && n >= 1 ? n : undefined;
    });
    expect(sample(await metricsOf(stack.credentials), 'relay_token_refreshes_total', { sender: 'wrong-secret' }) ?? 0).toBe(0);
  });

  it("exports the same metrics over OTLP with each service's name", async () => {
    const names = await eventually('relay metrics in OTLP exports', async () => {
      const seen = new Map<string, Set<string>>();
      for (const req of receiver.metrics as OtlpMetricsRequest[]) {
        for (const rm of req.resourceMetrics ?? []) {
          const service = rm.resource?.attributes?.find((a) => a.key === 'service.name')?.value?.stringValue ?? '';
          for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) seen.set(service, (seen.get(service) ?? new Set()).add(m.name));
        }
      }
      return seen.get('relay-ingest')?.has('relay_messages_accepted') && seen.get('relay-smtp-sender')?.has('relay_messages_sent') ? seen : undefined;
    });
    expect([...names.keys()].sort()).toEqual(expect.arrayContaining(['relay-ingest', 'relay-scheduler', 'relay-smtp-sender']));
    expect(names.get('relay-scheduler')?.has('relay_queue_depth_messages')).toBe(true);
  });
});

interface OtlpMetricsRequest {
  resourceMetrics?: Array<{
    resource?: { attributes?: Array<{ key: string; value?: { stringValue?: string } }> };
    scopeMetrics?: Array<{ metrics?: Array<{ name: string }> }>;
  }>;
}

describe.skipIf(!hasNatsServer)(`health when NATS goes away (needs ${NATS_SERVER_BIN})`, () => {
  let nats: PrivateNats;
  let down: Stack;
  const healthApp = newClient('health-app', ['no-reply']);

  beforeAll(async () => {
    nats = await startPrivateNats();
    down = await startStack({
      label: 'health',
      config: {
        clients: [clientEntry(healthApp)],
        senders: [smtpSender({ id: 'no-reply', server: smtp, auth: { user: SMTP_USER, password: SMTP_PASSWORD } })],
      },
      env: { NATS_URL: nats.url, OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' },
    });
  });

  afterAll(async () => {
    await nats?.restart().catch(() => {});
    await down?.stop();
    await nats?.close();
  });

  const credentialsAddress = () => `127.0.0.1:${down.credentials.ports.grpc}`;
  const all = () => [down.ingest, down.scheduler, down.smtpSenders[0]!, down.graphSender, down.credentials];
  const status = async (p: ServiceProcess, path: string) => (await fetch(`http://127.0.0.1:${p.ports.metrics}${path}`)).status;
  const readiness = async () => Promise.all(all().map((p) => status(p, '/readyz')));

  it('reports ready, then not ready while NATS is down (but still alive), then ready again', async () => {
    // Redis and NATS connections finish coming up just after the ready lines.
    await eventually('every /readyz to answer 200', async () => ((await readiness()).every((s) => s === 200) ? true : undefined));
    expect(await checkGrpcHealth(down.address)).toBe('SERVING');
    expect(await checkGrpcHealth(down.address, 'relay.v1.MailService')).toBe('SERVING');
    expect(await checkGrpcHealth(credentialsAddress())).toBe('SERVING');
    expect(await checkGrpcHealth(credentialsAddress(), 'relay.internal.v1.CredentialsService')).toBe('SERVING');

    await nats.kill();
    await eventually('every /readyz to answer 503', async () => ((await readiness()).every((s) => s === 503) ? true : undefined));
    for (const p of all()) expect(await status(p, '/healthz'), p.name).toBe(200);
    await eventually('gRPC health NOT_SERVING', async () => ((await checkGrpcHealth(down.address)) === 'NOT_SERVING' ? true : undefined));
    await eventually('credentials gRPC health NOT_SERVING', async () => ((await checkGrpcHealth(credentialsAddress())) === 'NOT_SERVING' ? true : undefined));

    await nats.restart();
    await eventually('every /readyz to answer 200 again', async () => ((await readiness()).every((s) => s === 200) ? true : undefined), 30_000);
    await eventually('gRPC health SERVING again', async () => ((await checkGrpcHealth(down.address)) === 'SERVING' ? true : undefined));
    await eventually('credentials gRPC health SERVING again', async () => ((await checkGrpcHealth(credentialsAddress())) === 'SERVING' ? true : undefined));
  });
});
