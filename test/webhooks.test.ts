import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { ListWebhookDeliveriesRequestSchema, MessageState, type ListWebhookDeliveriesResponse } from '@relay/proto';
import { createNatsAuth } from '@relay/bus';
import {
  Changes,
  clientEntry,
  FAST_DELIVERY,
  hasNatsServer,
  historyStates,
  newClient,
  type PrivateNats,
  RpcError,
  smtpSender,
  type Stack,
  startPrivateNats,
  startSmtpServer,
  startStack,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  uniquePrefix,
  waitForState,
} from '@relay/testkit';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

interface Received {
  id: string;
  type: string;
  messageId: string;
  state: string;
  client: string;
  data: Record<string, unknown>;
}

type Mode = 'ok' | 'unavailable' | 'process-then-fail';

/**
 * A webhook receiver as an integrator would write one: verifies each delivery with the
 * standardwebhooks library, and keeps each event id once (repeats are counted, not processed).
 */
class Receiver {
  server: Server | undefined;
  port = 0;
  mode: Mode = 'ok';
  /** Processed events in arrival order, each id once. */
  events: Received[] = [];
  seen = new Set<string>();
  repeats = 0;
  badSignatures = 0;
  /** Requests answered 503 / refused-after-processing. */
  refused = 0;
  readonly changes = new Changes();
  readonly #verifier = new Webhook(SECRET);

  async start() {
    this.server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Down: the port refuses connections. */
  async stop() {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse) {
    try {
      await this.#answer(req, res);
    } finally {
      this.changes.notify();
    }
  }

  async #answer(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    if (this.mode === 'unavailable') {
      this.refused++;
      res.writeHead(503).end('down for maintenance');
      return;
    }
    let event: { type: string; data: Record<string, unknown> };
    try {
      event = this.#verifier.verify(body, req.headers as Record<string, string>) as typeof event;
    } catch {
      this.badSignatures++;
      res.writeHead(401).end();
      return;
    }
    const id = String(req.headers['webhook-id']);
    if (this.seen.has(id)) {
      this.repeats++;
    } else {
      this.seen.add(id);
      this.events.push({
        id,
        type: event.type,
        messageId: String(event.data.message_id),
        state: String(event.data.state),
        client: String(event.data.client),
        data: event.data,
      });
    }
    if (this.mode === 'process-then-fail') {
      // Processed, but the answer is lost: the relay must send it again, with the same id.
      this.refused++;
      res.writeHead(500).end('oops');
      return;
    }
    res.writeHead(204).end();
  }

  typesOf(messageId: string): string[] {
    return this.events.filter((e) => e.messageId === messageId).map((e) => e.type);
  }

  /** Resolves once `messageId` has an event of each of `types` (in any order; the test checks the order). */
  waitFor(messageId: string, types: string[], timeoutMs = 20_000): Promise<string[]> {
    return this.changes.until(
      () => {
        const got = this.typesOf(messageId);
        return types.every((t) => got.includes(t)) ? got : undefined;
      },
      timeoutMs,
      () => new Error(`webhook events of ${messageId}: wanted ${types.join(', ')}, got ${this.typesOf(messageId).join(', ') || 'none'}`),
    );
  }
}

const REJECTED = 'nobody@students.campus.example';

let smtp: TestSmtpServer;
/** A broker with one user per service (where nats-server is installed): ingest's rights cover webhooks. */
let nats: PrivateNats | undefined;
let stack: Stack;
let app: TestClient;
let other: TestClient;
let ops: TestClient;
const receiver = new Receiver();
const sis = newClient('student-system', ['no-reply']);
const billing = newClient('billing-app', ['no-reply']);
const itOps = newClient('it-ops', [], true);

/** The webhook event type of each state in a message's history, in order. */
const expectedTypes = (states: string[]) => states.map((s) => `message.${s.toLowerCase()}`);

beforeAll(async () => {
  smtp = await startSmtpServer({
    reply: (c) => (c.phase === 'rcpt' && c.rcpt === REJECTED ? { code: 550, message: '5.1.1 User unknown' } : undefined),
  });
  await receiver.start();
  const prefix = uniquePrefix('webhooks');
  const auth = hasNatsServer ? createNatsAuth(prefix) : undefined;
  if (auth) nats = await startPrivateNats({ auth });
  stack = await startStack({
    prefix,
    ...(nats && auth ? { nats: { url: nats.url, auth } } : {}),
    env: { SIS_WEBHOOK_SECRET: SECRET },
    config: {
      clients: [
        {
          ...clientEntry(sis),
          webhooks: [
            {
              url: `http://127.0.0.1:${receiver.port}/relay-events?token=abc`,
              secret: 'env:SIS_WEBHOOK_SECRET',
              events: ['queued', 'sending', 'sent', 'retrying', 'failed'],
            },
          ],
        },
        clientEntry(billing),
        clientEntry(itOps),
      ],
      senders: [smtpSender({ id: 'no-reply', security: 'none', server: smtp })],
      delivery: { ...FAST_DELIVERY, webhook_retry_initial: '200ms', webhook_retry_max: '1s' },
    },
  });
  app = stack.client(sis.apiKey);
  other = stack.client(billing.apiKey);
  ops = stack.client(itOps.apiKey);
}, 60_000);

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([smtp?.close(), receiver.stop(), nats?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

const mail = (to: string) => ({ sender: 'no-reply', to: [to], subject: 'Your enrolment', text: 'Welcome.' });

describe('webhooks', () => {
  it("posts a client's own message's state changes, signed, in order", async () => {
    const { messageId } = await app.sendMail(mail('ada@students.campus.example'));
    const { messageId: othersId } = await other.sendMail(mail('bob@students.campus.example'));
    const done = await waitForState(app, messageId, [MessageState.SENT]);
    await waitForState(other, othersId, [MessageState.SENT]);
    const types = await receiver.waitFor(messageId, ['message.queued', 'message.sending', 'message.sent']);
    expect(types).toEqual(expectedTypes(historyStates(done)));
    const sent = receiver.events.find((e) => e.messageId === messageId && e.type === 'message.sent')!;
    expect(sent.data).toMatchObject({ message_id: messageId, client: 'student-system', sender: 'no-reply', state: 'SENT', last_error: '' });
    expect(sent.id).toMatch(/^evt_/);
    expect(receiver.badSignatures).toBe(0);

    // What the admin sees: the endpoint, nothing waiting, and the attempts with their answers.
    const res = await ops.admin<ListWebhookDeliveriesResponse>(
      'listWebhookDeliveries',
      create(ListWebhookDeliveriesRequestSchema, { client: 'student-system' }),
    );
    expect(res.endpoints).toHaveLength(1);
    const [endpoint] = res.endpoints;
    expect(endpoint!.url).toContain('/relay-events');
    expect(endpoint!.events).toEqual(['queued', 'sending', 'sent', 'retrying', 'failed']);
    const delivered = endpoint!.deliveries.find((d) => d.eventId === sent.id)!;
    expect(delivered).toMatchObject({ eventType: 'message.sent', messageId, statusCode: 204, error: '', attempt: 1 });

    // Another client's mail, sent meanwhile, made no event here.
    expect(receiver.typesOf(othersId)).toEqual([]);
    await expect(app.admin('listWebhookDeliveries', create(ListWebhookDeliveriesRequestSchema, { client: 'student-system' }))).rejects.toSatisfy(
      (e: unknown) => e instanceof RpcError && e.code === 7,
    );
    await expect(ops.admin('listWebhookDeliveries', create(ListWebhookDeliveriesRequestSchema, { client: 'nobody' }))).rejects.toThrow(
      /client "nobody" does not exist/,
    );
  });

  it('keeps every event while the receiver is down and delivers each once it is back, in order per message', async () => {
    await receiver.stop();
    const ids = await Promise.all(
      ['ada@students.campus.example', REJECTED, 'cy@students.campus.example'].map(async (to) => (await app.sendMail(mail(to))).messageId),
    );
    const finals = await Promise.all([
      waitForState(app, ids[0]!, [MessageState.SENT]),
      waitForState(app, ids[1]!, [MessageState.FAILED]),
      waitForState(app, ids[2]!, [MessageState.SENT]),
    ]);
    for (const id of ids) expect(receiver.typesOf(id)).toEqual([]);

    // Back, but answering 503 for a while: still nothing is taken, and the attempts say why.
    receiver.mode = 'unavailable';
    await receiver.start();
    await receiver.changes.until(
      () => (receiver.refused >= 2 ? true : undefined),
      15_000,
      () => new Error('no attempt reached the receiver'),
    );
    const down = await ops.admin<ListWebhookDeliveriesResponse>(
      'listWebhookDeliveries',
      create(ListWebhookDeliveriesRequestSchema, { client: 'student-system', limit: 64 }),
    );
    expect(down.endpoints[0]!.pending).toBeGreaterThan(0n);
    expect(down.endpoints[0]!.deliveries.some((d) => d.statusCode === 503 && d.error === 'HTTP 503' && d.response === 'down for maintenance')).toBe(true);
    expect(down.endpoints[0]!.deliveries.some((d) => d.statusCode === 0 && /ECONNREFUSED/.test(d.error))).toBe(true);
    // Attempts count per event: an event tried again shows its number.
    const attempts = new Map<string, number[]>();
    for (const d of down.endpoints[0]!.deliveries) attempts.set(d.eventId, [...(attempts.get(d.eventId) ?? []), d.attempt]);
    expect([...attempts.values()].some((a) => a.length > 1 && new Set(a).size === a.length)).toBe(true);

    // Then it processes events but loses its answers (500): each comes again with the same id.
    receiver.mode = 'process-then-fail';
    await receiver.changes.until(
      () => (receiver.events.some((e) => ids.includes(e.messageId)) ? true : undefined),
      15_000,
      () => new Error('no event was delivered after the receiver came back'),
    );
    receiver.mode = 'ok';

    const wanted = finals.map((f) => expectedTypes(historyStates(f)));
    const got = await Promise.all(ids.map((id, i) => receiver.waitFor(id, wanted[i]!)));
    expect(got).toEqual(wanted);
    expect(wanted[1]).toContain('message.failed');
    const failed = receiver.events.find((e) => e.messageId === ids[1] && e.type === 'message.failed')!;
    expect(String(failed.data.last_error)).toContain('550');
    expect(receiver.repeats).toBeGreaterThan(0);
    expect(receiver.badSignatures).toBe(0);

    // The failures were logged, without the secret or the URL's query.
    const logs = stack.ingest.logs.join('\n');
    expect(logs).toContain('webhook endpoint is failing');
    expect(logs).toContain('webhook endpoint takes events again');
    expect(logs).not.toContain(SECRET.slice(6, 26));
    expect(logs).not.toContain('token=abc');
    if (nats) expect(nats.output()).not.toMatch(/Violation/);

    // And counted, by client and outcome.
    const metrics = await (await fetch(`http://127.0.0.1:${stack.ingest.ports.metrics}/metrics`)).text();
    const count = (outcome: string) =>
      Number(new RegExp(`^relay_webhook_attempts_total\\{[^}]*client="student-system"[^}]*outcome="${outcome}"[^}]*\\} (\\S+)`, 'm').exec(metrics)?.[1] ?? 0);
    expect(count('failed')).toBeGreaterThan(0);
    expect(count('delivered')).toBeGreaterThanOrEqual(receiver.events.length);
  });
});
