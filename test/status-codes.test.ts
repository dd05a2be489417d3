import { randomBytes, randomUUID } from 'node:crypto';
import { MessageState, type SendMailResponse } from '@relay/proto';
import {
  clientEntry,
  codeOf,
  createTestClient,
  dropBus,
  FAST_DELIVERY,
  hasNatsServer,
  mailsWithId,
  NATS_SERVER_BIN,
  newClient,
  pipelineSettled,
  type PrivateNats,
  randomApiKey,
  RpcError,
  type SendMailInit,
  type ServiceProcess,
  sleep,
  smtpSender,
  spawnService,
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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MAX_MESSAGE_BYTES = 64 * 1024;

let smtp: TestSmtpServer;
let stack: Stack;
let client: TestClient;

const app = newClient('billing-app', ['no-reply']);
const otherApp = newClient('library-app', ['library']);
const ops = newClient('it-ops', [], true);

const message = (over: Partial<SendMailInit> = {}): SendMailInit => ({
  sender: 'no-reply',
  to: ['ada@students.campus.example'],
  subject: 'Status codes',
  text: 'hello',
  ...over,
});

beforeAll(async () => {
  smtp = await startSmtpServer({ security: 'starttls', users: { relay: 'secret' } });
  stack = await startStack({
    label: 'codes',
    config: {
      clients: [clientEntry(app), clientEntry(otherApp), clientEntry(ops)],
      senders: [
        smtpSender({ id: 'no-reply', server: smtp, auth: { user: 'relay', password: 'secret' } }),
        smtpSender({ id: 'library', server: smtp, auth: { user: 'relay', password: 'secret' } }),
      ],
      limits: { max_message_bytes: MAX_MESSAGE_BYTES },
      delivery: FAST_DELIVERY,
    },
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await smtp?.close();
  expect(uncleanExits(results ?? [])).toEqual([]);
});

describe('status codes', () => {
  it('UNAUTHENTICATED without a key or with an unknown key', async () => {
    const noKey = await codeOf(client.sendMail(message(), { apiKey: null }));
    expect(noKey.code).toBe(status.UNAUTHENTICATED);
    expect(noKey.details).toMatch(/authorization: Bearer/);
    expect((await codeOf(client.getMessage(randomUUID(), { apiKey: null }))).code).toBe(status.UNAUTHENTICATED);
    const unknown = await codeOf(client.sendMail(message(), { apiKey: randomApiKey() }));
    expect(unknown.code).toBe(status.UNAUTHENTICATED);
    expect(unknown.details).toMatch(/unknown API key/);
    // A key is not a prefix match: one character short is unknown too.
    expect((await codeOf(client.sendMail(message(), { apiKey: app.apiKey.slice(0, -1) }))).code).toBe(status.UNAUTHENTICATED);
  });

  it('PERMISSION_DENIED for a sender the key may not use', async () => {
    const denied = await codeOf(client.sendMail(message({ sender: 'library' })));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(denied.details).toContain('library');
    // The same sender is fine for the client that owns it.
    const ok = await client.sendMail(message({ sender: 'library' }), { apiKey: otherApp.apiKey });
    expect(ok.state).toBe(MessageState.QUEUED);
  });

  it('INVALID_ARGUMENT naming the field', async () => {
    const badTo = await codeOf(client.sendMail(message({ to: ['ada@students.campus.example', 'not-an-address'] })));
    expect(badTo.code).toBe(status.INVALID_ARGUMENT);
    expect(badTo.details).toContain('to[1]');

    const none = await codeOf(client.sendMail(message({ to: [] })));
    expect(none.code).toBe(status.INVALID_ARGUMENT);
    expect(none.details).toMatch(/^to: .*recipient/);

    const crlf = await codeOf(client.sendMail(message({ subject: 'Hi\r\nBcc: victim@elsewhere.example' })));
    expect(crlf.code).toBe(status.INVALID_ARGUMENT);
    expect(crlf.details).toMatch(/^subject: .*line breaks/);

    const big = { filename: 'big.bin', contentType: 'application/octet-stream', content: randomBytes(MAX_MESSAGE_BYTES + 1) };
    const tooBig = await codeOf(client.sendMail(message({ attachments: [big] })));
    expect(tooBig.code).toBe(status.INVALID_ARGUMENT);
    expect(tooBig.details).toMatch(/^attachments: .*over the limit of 64 KB/);
    // Just under the lowered limit is accepted.
    const small = { ...big, content: randomBytes(MAX_MESSAGE_BYTES - 1024) };
    expect((await client.sendMail(message({ attachments: [small] }))).state).toBe(MessageState.QUEUED);
  });

  it('NOT_FOUND for an unknown message id and for another client’s message', async () => {
    const unknown = await codeOf(client.getMessage(randomUUID()));
    expect(unknown.code).toBe(status.NOT_FOUND);
    const mine = await client.sendMail(message({ subject: 'mine' }));
    expect((await client.getMessage(mine.messageId)).messageId).toBe(mine.messageId);
    expect((await codeOf(client.getMessage(mine.messageId, { apiKey: otherApp.apiKey }))).code).toBe(status.NOT_FOUND);
  });

  it('idempotency: the same key and message return the original id and deliver once; a different message is ALREADY_EXISTS', async () => {
    const key = `invoice-${randomUUID()}`;
    const req = message({ subject: 'Idempotent invoice', idempotencyKey: key, headers: { 'X-Invoice': '42' } });
    const first = await client.sendMail(req);
    const again = await client.sendMail(req);
    expect(again.messageId).toBe(first.messageId);

    const clash = await codeOf(client.sendMail({ ...req, text: 'a different body' }));
    expect(clash.code).toBe(status.ALREADY_EXISTS);
    expect(clash.details).toContain('idempotency_key');

    await waitForState(client, first.messageId, [MessageState.SENT]);
    // A third repeat after delivery still answers with the original id and its state.
    const late = await client.sendMail(req);
    expect(late.messageId).toBe(first.messageId);
    expect(late.state).toBe(MessageState.SENT);
    // Everything accepted went through the scheduler and the senders: a duplicate would be here.
    await pipelineSettled(stack.prefix);
    expect(mailsWithId(smtp, first.messageId)).toHaveLength(1);
    expect(smtp.messages.filter((m) => m.parsed.subject === 'Idempotent invoice')).toHaveLength(1);
  });

  it('AdminService.TestSender refuses a non-admin key with PERMISSION_DENIED', async () => {
    const denied = await codeOf(client.testSender({ sender: 'no-reply' }));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect((await codeOf(client.testSender({ sender: 'no-reply' }, { apiKey: null }))).code).toBe(status.UNAUTHENTICATED);
    // An admin key gets past the check (whatever the test itself then reports).
    const asAdmin = await client.testSender({ sender: 'no-reply' }, { apiKey: ops.apiKey }).then(
      () => 'OK',
      (err: unknown) => (err instanceof RpcError ? status[err.code] : String(err)),
    );
    expect(asAdmin).not.toBe('PERMISSION_DENIED');
    expect(asAdmin).not.toBe('UNAUTHENTICATED');
  });
});

// The broker goes away under a running ingest: a NATS server of this test's own, killed and restarted.
describe.skipIf(!hasNatsServer)(`broker down (needs ${NATS_SERVER_BIN})`, () => {
  let nats: PrivateNats;
  let ingest: ServiceProcess;
  let down: TestClient;
  const prefix = uniquePrefix('codes-down');
  const readyz = async () => (await fetch(`http://127.0.0.1:${ingest.ports.metrics}/readyz`)).status;
  const retried = message({ subject: 'broker down, retried', idempotencyKey: `retry-${randomUUID()}` });

  beforeAll(async () => {
    nats = await startPrivateNats();
    ingest = await spawnService('ingest', { env: { ...stack.env, NATS_URL: nats.url, RELAY_BUS_PREFIX: prefix, RELAY_GRPC_PORT: '0', RELAY_HTTP_PORT: '0' } });
    down = createTestClient(`127.0.0.1:${ingest.ports.grpc}`, app.apiKey);
    expect((await down.sendMail(message({ subject: 'broker up' }))).state).toBe(MessageState.QUEUED);
    await nats.kill();
  });

  afterAll(async () => {
    down?.close();
    await ingest?.kill();
    if (nats) {
      await dropBus(prefix, nats.url).catch(() => {});
      await nats.close();
    }
  });

  it('UNAVAILABLE within the deadline when the broker is down', async () => {
    const t0 = Date.now();
    const refused = await codeOf(down.sendMail(message({ subject: 'broker down' }), { deadlineMs: 15_000 }));
    expect(refused.code).toBe(status.UNAVAILABLE);
    expect(refused.details).toMatch(/not stored/);
    expect(Date.now() - t0).toBeLessThan(14_000);
    // Readiness says so too, so a load balancer would stop sending calls here.
    expect(await readyz()).toBe(503);
  });

  // With an idempotency key the record is claimed first; a broker that is down must fail that
  // claim after one publish timeout, not several, so the caller still sees UNAVAILABLE.
  it('UNAVAILABLE within the deadline with an idempotency key too', async () => {
    const refused = await codeOf(down.sendMail(retried, { deadlineMs: 15_000 }));
    expect(refused.code).toBe(status.UNAVAILABLE);
  });

  it('the refused message was not stored: the same key is accepted once the broker is back', async () => {
    // Both refused calls are finished inside ingest (not only at the caller's deadline) before
    // the broker comes back, so nothing of theirs can be stored late.
    const failed = () => ingest.logs.filter((l) => l.includes('"msg":"call failed"')).length;
    const until = Date.now() + 20_000;
    while (failed() < 2 && Date.now() < until) await sleep(100);
    expect(failed()).toBe(2);
    await nats.restart();
    const ready = Date.now() + 15_000;
    while ((await readyz()) !== 200 && Date.now() < ready) await sleep(100);
    expect(await readyz()).toBe(200);
    const deadline = Date.now() + 15_000;
    let accepted: SendMailResponse | undefined;
    while (!accepted) {
      accepted = await down.sendMail(retried, { deadlineMs: 15_000 }).catch((err: unknown) => {
        if (!(err instanceof RpcError) || err.code !== status.UNAVAILABLE || Date.now() > deadline) throw err;
        return undefined;
      });
      if (!accepted) await sleep(250);
    }
    expect(accepted.state).toBe(MessageState.QUEUED);
    // Stored now: the status read finds it, and a repeat answers with the same id.
    expect((await down.getMessage(accepted.messageId)).state).toBe(MessageState.QUEUED);
    expect((await down.sendMail(retried)).messageId).toBe(accepted.messageId);

    const exit = await ingest.stop('SIGTERM', 20_000);
    expect(exit, ingest.logs.slice(-10).join('\n')).toEqual({ code: 0, signal: null });
  });
});
