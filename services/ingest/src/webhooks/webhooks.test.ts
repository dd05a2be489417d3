import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connectBus, type Bus } from '@relay/bus';
import { Secret, type ClientConfig, type WebhookEventName } from '@relay/config';
import { uuidv7 } from '@relay/core';
import { MessageState } from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { consumerSettled, dropBus, eventually, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebhooks, type Webhooks } from './webhooks.js';

/** The webhook workers on the local NATS, with state changes published here as the services would. */
const prefix = uniquePrefix('webhooks-unit');
const secret = `whsec_${randomBytes(32).toString('base64')}`;
const logger = createLogger({ service: 'test', level: 'silent' });
let bus: Bus;
let server: Server | undefined;
let port = 0;
/** Event types per message, in arrival order, each event id once. */
const got = new Map<string, string[]>();
const ids = new Set<string>();

async function receiverUp() {
  const verifier = new Webhook(secret);
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const e = verifier.verify(Buffer.concat(chunks).toString('utf8'), req.headers as Record<string, string>) as { type: string; data: { message_id: string } };
    const id = String(req.headers['webhook-id']);
    if (!ids.has(id)) {
      ids.add(id);
      got.set(e.data.message_id, [...(got.get(e.data.message_id) ?? []), e.type]);
    }
    res.writeHead(200).end('ok');
  });
  await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
}

async function receiverDown() {
  const s = server;
  server = undefined;
  s?.closeAllConnections();
  await new Promise((resolve) => s?.close(resolve));
}

const client = (name: string, events?: WebhookEventName[]): ClientConfig => ({
  name,
  apiKey: undefined,
  senders: ['no-reply'],
  admin: false,
  limits: { messagesPerSecond: undefined, bytesPerSecond: undefined, maxStoredMessages: undefined, maxStoredBytes: undefined, dailyRecipients: undefined },
  ...(events ? { webhooks: [{ url: `http://127.0.0.1:${port}/hook`, secret: new Secret(secret), events }] } : {}),
});

const make = () => createWebhooks(bus, logger, { retryInitialMs: 100, retryMaxMs: 300, maxAgeMs: 3_600_000 });

/** A message's state changes as ingest, the scheduler and a sender publish them: only QUEUED names the client. */
async function lifecycle(id: string, clientName: string, states: MessageState[]) {
  for (const state of states) {
    await bus.publishStatus({
      messageId: id,
      sender: 'no-reply',
      state,
      attempt: state === MessageState.QUEUED ? 0 : 1,
      detail: '',
      service: 'test',
      ...(state === MessageState.QUEUED ? { client: clientName } : {}),
    });
  }
}

const FULL = [MessageState.QUEUED, MessageState.SENDING, MessageState.SENT];
const TYPES = ['message.queued', 'message.sending', 'message.sent'];

beforeAll(async () => {
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'webhooks-test' });
  await receiverUp();
});

afterAll(async () => {
  await receiverDown();
  await bus?.close();
  await dropBus(prefix);
});

describe('webhook workers', () => {
  let first: Webhooks;
  let second: Webhooks | undefined;
  afterAll(async () => {
    await first?.stop(2_000);
    await second?.stop(2_000);
  });

  it('deliver the events of a client with a webhook only, through a restart while the receiver is down', async () => {
    first = make();
    const clients = [client('sis', ['queued', 'sending', 'sent']), client('billing')];
    await first.start(clients);
    const a = uuidv7();
    await lifecycle(a, 'sis', FULL);
    await eventually(() => (got.get(a)?.length === 3 ? true : undefined), 10_000);
    expect(got.get(a)).toEqual(TYPES);

    await receiverDown();
    const b = uuidv7();
    const other = uuidv7();
    await lifecycle(b, 'sis', FULL.slice(0, 2));
    await lifecycle(other, 'billing', FULL);
    // Attempts fail meanwhile, and are logged.
    await eventually(async () => {
      const [e] = await first.deliveries(clients[0]!, 10);
      return e!.deliveries.some((d) => d.status_code === 0 && d.message_id === b) ? true : undefined;
    }, 10_000);
    // The relay stops; more changes happen while nothing runs; a new one starts (no cache of clients).
    await first.stop(2_000);
    await lifecycle(b, 'sis', FULL.slice(2));
    second = make();
    await second.start(clients);
    await receiverUp();
    await eventually(() => (got.get(b)?.length === 3 ? true : undefined), 15_000);
    expect(got.get(b)).toEqual(TYPES);
    expect(got.has(other)).toBe(false);
    const [view] = await second.deliveries(clients[0]!, 64);
    expect(view).toMatchObject({ url: `http://127.0.0.1:${port}/hook`, events: ['queued', 'sending', 'sent'], pending: 0 });
    expect(view!.deliveries[0]).toMatchObject({ status_code: 200, response: 'ok', error: '' });
  });

  it('follow a change of the events asked for, and stop for a removed webhook', async () => {
    const w = second!;
    await w.apply([client('sis', ['sent'])]);
    const c = uuidv7();
    await lifecycle(c, 'sis', FULL);
    await eventually(() => (got.get(c) ? true : undefined), 10_000);
    await w.apply([client('sis')]);
    const d = uuidv7();
    await lifecycle(d, 'sis', FULL);
    // Once the fan-out has seen d's changes (acked, with no endpoint for them), the webhook is back.
    await consumerSettled(bus.jsm, bus.names.statusStream, bus.names.webhooksFanoutConsumer);
    await w.apply([client('sis', ['sent'])]);
    const e = uuidv7();
    await lifecycle(e, 'sis', FULL);
    await eventually(() => (got.get(e) ? true : undefined), 10_000);
    expect(got.get(c)).toEqual(['message.sent']);
    expect(got.get(e)).toEqual(['message.sent']);
    expect(got.has(d)).toBe(false);
  });
});

describe('webhooks of a client managed through the API', () => {
  let w: Webhooks | undefined;
  afterAll(async () => {
    await w?.stop(2_000);
  });

  it('keep its events waiting until a secret exists, then have relay-credentials sign them', async () => {
    const signed: string[] = [];
    // What relay-credentials answers: the signature made with the webhook's secret, held there.
    const remote = async (clientName: string, url: string, id: string, at: Date, payload: Uint8Array) => {
      signed.push(`${clientName} ${url}`);
      return new Webhook(secret).sign(id, at, Buffer.from(payload).toString('utf8'));
    };
    w = createWebhooks(bus, logger, { retryInitialMs: 100, retryMaxMs: 300, maxAgeMs: 3_600_000 }, remote);
    const url = `http://127.0.0.1:${port}/hook`;
    const managed = (secretCreatedAt?: string): ClientConfig => ({
      ...client('portal'),
      managedBy: 'api',
      webhooks: [{ url, events: ['queued', 'sending', 'sent'], ...(secretCreatedAt ? { secretCreatedAt } : {}) }],
    });
    await w.start([managed()]);
    const m = uuidv7();
    await lifecycle(m, 'portal', FULL);
    // Stored for the endpoint, not delivered: the view says why and what to run.
    await eventually(async () => ((await w!.deliveries(managed(), 10))[0]!.pending === 3 ? true : undefined), 10_000);
    const [held] = await w.deliveries(managed(), 10);
    expect(held!.held).toBe(`no signing secret; run relay webhooks secret portal '${url}' (CreateWebhookSecret)`);
    expect(held!.deliveries).toEqual([]);
    expect(got.has(m)).toBe(false);

    await w.apply([managed(new Date().toISOString())]);
    await eventually(() => (got.get(m)?.length === 3 ? true : undefined), 10_000);
    expect(got.get(m)).toEqual(TYPES);
    expect(signed).toEqual(Array(3).fill(`portal ${url}`));
    const [view] = await w.deliveries(managed(new Date().toISOString()), 10);
    expect(view).toMatchObject({ held: '', pending: 0 });
  });
});
