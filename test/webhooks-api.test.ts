import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { create, toJson } from '@bufbuild/protobuf';
import { createNatsAuth } from '@relay/bus';
import {
  CreateApiKeyRequestSchema,
  CreateWebhookSecretRequestSchema,
  ListClientsRequestSchema,
  ListClientsResponseSchema,
  ListWebhookDeliveriesRequestSchema,
  MessageState,
  PutClientRequestSchema,
  type CreateApiKeyResponse,
  type CreateWebhookSecretResponse,
  type ListClientsResponse,
  type ListWebhookDeliveriesResponse,
} from '@relay/proto';
import {
  Changes,
  clientEntry,
  codeOf,
  eventually,
  FAST_DELIVERY,
  hasNatsServer,
  historyStates,
  newClient,
  type PrivateNats,
  smtpSender,
  type Stack,
  startPrivateNats,
  startSmtpServer,
  startStack,
  status,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  uniquePrefix,
  waitForState,
} from '@relay/testkit';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A client managed through the operations API gets a webhook with PutClient and its signing secret
// from CreateWebhookSecret; relay-credentials keeps the secret and signs every delivery.

interface Delivery {
  headers: Record<string, string>;
  body: string;
  messageId: string;
  type: string;
}

/** Keeps every request as it came: the test verifies each with the secret it holds at that point. */
class Receiver {
  server: Server | undefined;
  port = 0;
  requests: Delivery[] = [];
  readonly changes = new Changes();

  async start() {
    this.server = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks).toString('utf8');
      const event = JSON.parse(body) as { type: string; data: { message_id: string } };
      this.requests.push({ headers: req.headers as Record<string, string>, body, messageId: event.data.message_id, type: event.type });
      res.writeHead(204).end();
      this.changes.notify();
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop() {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  of(messageId: string): Delivery[] {
    return this.requests.filter((r) => r.messageId === messageId);
  }

  waitFor(messageId: string, types: string[], timeoutMs = 20_000): Promise<Delivery[]> {
    return this.changes.until(
      () => {
        const got = this.of(messageId);
        return types.every((t) => got.some((d) => d.type === t)) ? got : undefined;
      },
      timeoutMs,
      () =>
        new Error(
          `webhook events of ${messageId}: wanted ${types.join(', ')}, got ${
            this.of(messageId)
              .map((d) => d.type)
              .join(', ') || 'none'
          }`,
        ),
    );
  }
}

/** What a receiver does with the standardwebhooks library: true when the delivery verifies with `secret`. */
function verifies(secret: string, d: Delivery): boolean {
  try {
    new Webhook(secret).verify(d.body, d.headers);
    return true;
  } catch {
    return false;
  }
}

let smtp: TestSmtpServer;
let nats: PrivateNats | undefined;
let stack: Stack;
let ops: TestClient;
const receiver = new Receiver();
const itOps = newClient('it-ops', [], true);
const fileApp = newClient('file-app', ['no-reply']);
let hookUrl: string;
const EVENTS = ['queued', 'sending', 'sent'];
const mail = (subject: string) => ({ sender: 'no-reply', to: ['ada@students.campus.example'], subject, text: 'Welcome.' });
const deliveries = (client: string) =>
  ops.admin<ListWebhookDeliveriesResponse>('listWebhookDeliveries', create(ListWebhookDeliveriesRequestSchema, { client, limit: 64 }));
const makeSecret = (client: string, url: string, keepPreviousSeconds?: number) =>
  ops.admin<CreateWebhookSecretResponse>(
    'createWebhookSecret',
    create(CreateWebhookSecretRequestSchema, { client, url, ...(keepPreviousSeconds === undefined ? {} : { keepPreviousSeconds }) }),
  );

beforeAll(async () => {
  smtp = await startSmtpServer({});
  await receiver.start();
  hookUrl = `http://127.0.0.1:${receiver.port}/relay-events?token=abc`;
  const prefix = uniquePrefix('webhooks-api');
  // With one NATS user per service (where nats-server is installed): each one's rights cover its part.
  const auth = hasNatsServer ? createNatsAuth(prefix) : undefined;
  if (auth) nats = await startPrivateNats({ auth });
  stack = await startStack({
    prefix,
    ...(nats && auth ? { nats: { url: nats.url, auth } } : {}),
    config: {
      clients: [clientEntry(itOps), clientEntry(fileApp)],
      senders: [smtpSender({ id: 'no-reply', security: 'none', server: smtp })],
      delivery: { ...FAST_DELIVERY, webhook_retry_initial: '200ms', webhook_retry_max: '1s' },
    },
  });
  ops = stack.client(itOps.apiKey);
}, 60_000);

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([smtp?.close(), receiver.stop(), nats?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

describe('webhooks of a client managed through the operations API', () => {
  let app: TestClient;
  let first: CreateWebhookSecretResponse;

  it('takes a webhook without a secret, refuses one with a secret, and says how to get one', async () => {
    const refused = await codeOf(
      ops.admin(
        'putClient',
        create(PutClientRequestSchema, {
          client: { name: 'portal', spec: { senders: ['no-reply'], webhooks: [{ url: hookUrl, secret: 'whsec_x', events: EVENTS }] } },
        }),
      ),
    );
    expect(refused.code).toBe(status.INVALID_ARGUMENT);
    expect(refused.details).toContain(
      "webhooks[0].secret: secrets are not accepted in a client's settings; the relay makes the signing secret: run relay webhooks secret",
    );

    await ops.admin(
      'putClient',
      create(PutClientRequestSchema, { client: { name: 'portal', spec: { senders: ['no-reply'], webhooks: [{ url: hookUrl, events: EVENTS }] } } }),
    );
    const key = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'portal' }));
    app = stack.client(key.apiKey);

    // relay.yaml's clients keep their secrets in the file; a URL the client does not have gets none.
    const fromFile = await codeOf(makeSecret('file-app', hookUrl));
    expect(fromFile.code).toBe(status.FAILED_PRECONDITION);
    expect(fromFile.details).toContain('defined in relay.yaml');
    const unknown = await codeOf(makeSecret('portal', 'https://elsewhere.example/h'));
    expect(unknown.code).toBe(status.NOT_FOUND);
    expect(unknown.details).toContain('has no webhook with url https://elsewhere.example/h');
  });

  it('delivers nothing before the secret exists, then the waiting events, signed with it', async () => {
    const { messageId } = await app.sendMail(mail('Before the secret'));
    const done = await waitForState(app, messageId, [MessageState.SENT]);
    // Every event waits in JetStream for the endpoint, which says why and what to run.
    const held = await eventually(async () => {
      const [e] = (await deliveries('portal')).endpoints;
      return e && e.pending === 3n ? e : undefined;
    }, 15_000);
    expect(held.heldReason).toBe(`no signing secret; run relay webhooks secret portal '${hookUrl}' (CreateWebhookSecret)`);
    expect(held.deliveries).toEqual([]);
    expect(receiver.requests).toEqual([]);
    expect(stack.ingest.logs.join('\n')).toContain('webhook has no signing secret; its events wait until one is made');

    first = await makeSecret('portal', hookUrl);
    expect(first.secret).toMatch(/^whsec_/);
    expect(Buffer.from(first.secret.slice(6), 'base64')).toHaveLength(32);
    expect(first.previousUntil).toBeUndefined();
    const got = await receiver.waitFor(messageId, ['message.queued', 'message.sending', 'message.sent']);
    expect(got.map((d) => d.type)).toEqual(historyStates(done).map((s) => `message.${s.toLowerCase()}`));
    for (const d of got) {
      expect(verifies(first.secret, d)).toBe(true);
      expect(d.headers['webhook-signature']!.split(' ')).toHaveLength(1);
    }
    // ListClients says the webhook has a secret, and shows none of it.
    const clients = await ops.admin<ListClientsResponse>('listClients', create(ListClientsRequestSchema, {}));
    const portal = clients.clients.find((c) => c.name === 'portal')!;
    expect(portal.webhookSecrets.map((w) => [w.url, w.createdBy])).toEqual([[hookUrl, 'it-ops']]);
    expect(JSON.stringify(toJson(ListClientsResponseSchema, clients))).not.toContain(first.secret.slice(6, 30));
    const [after] = (await deliveries('portal')).endpoints;
    expect(after).toMatchObject({ heldReason: '', pending: 0n });
    expect(after!.deliveries.every((d) => d.statusCode === 204)).toBe(true);
  });

  it('signs with the new and the replaced secret during a rotation', async () => {
    const second = await makeSecret('portal', hookUrl, 3_600);
    expect(second.secret).not.toBe(first.secret);
    expect(second.previousUntil).toBeDefined();
    const listed = await ops.admin<ListClientsResponse>('listClients', create(ListClientsRequestSchema, {}));
    expect(listed.clients.find((c) => c.name === 'portal')!.webhookSecrets[0]!.previousUntil).toEqual(second.previousUntil);
    // In force on ingest once the call answers; the next delivery carries both signatures.
    const { messageId } = await app.sendMail(mail('During the rotation'));
    await waitForState(app, messageId, [MessageState.SENT]);
    const got = await receiver.waitFor(messageId, ['message.queued', 'message.sending', 'message.sent']);
    for (const d of got) {
      expect(d.headers['webhook-signature']!.split(' ')).toHaveLength(2);
      expect(verifies(second.secret, d)).toBe(true);
      expect(verifies(first.secret, d)).toBe(true);
    }

    // 0: the replaced secret stops at once.
    const third = await makeSecret('portal', hookUrl, 0);
    const { messageId: last } = await app.sendMail(mail('After the rotation'));
    await waitForState(app, last, [MessageState.SENT]);
    const lastGot = await receiver.waitFor(last, ['message.sent']);
    for (const d of lastGot) {
      expect(verifies(third.secret, d)).toBe(true);
      expect(verifies(second.secret, d)).toBe(false);
    }

    // No secret in any log, and no URL token either; no service went beyond its NATS rights.
    const logs = [stack.ingest.logs, stack.credentials.logs].flat().join('\n');
    for (const s of [first, second, third]) expect(logs).not.toContain(s.secret.slice(6, 30));
    expect(logs).not.toContain('token=abc');
    expect(stack.credentials.logs.join('\n')).toContain('webhook secret made');
    if (nats) expect(nats.output()).not.toMatch(/Violation/);
  });
});
