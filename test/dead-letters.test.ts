import { randomBytes } from 'node:crypto';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import {
  CreateApiKeyRequestSchema,
  DeleteSenderRequestSchema,
  MessageState,
  PutClientRequestSchema,
  PutSenderRequestSchema,
  type CreateApiKeyResponse,
  type ListMessagesResponse,
} from '@relay/proto';
import { create } from '@bufbuild/protobuf';
import {
  clientEntry,
  codeOf,
  FAST_DELIVERY,
  historyStates,
  managedSpec,
  mailsWithId,
  newClient,
  type OtlpReceiver,
  type SmtpReply,
  smtpSender,
  type Stack,
  startOtlpReceiver,
  startSmtpServer,
  startStack,
  status,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SEND_AS_DENIED: SmtpReply = { code: 550, message: '5.7.60 SMTP; Client does not have permissions to send as this sender [SendAsDenied]' };

let receiver: OtlpReceiver;
let gate: TestSmtpServer;
let open: TestSmtpServer;
let refusing = true;
let stack: Stack;
let app: TestClient;
let other: TestClient;
let ops: TestClient;
const appKey = newClient('app', ['gate', 'ok', 'later', 'paced']);
const otherKey = newClient('other', ['ok']);
const opsKey = newClient('ops', [], true);

function config() {
  const senders = [
    smtpSender({ id: 'gate', server: gate }),
    smtpSender({ id: 'ok', server: open }),
    smtpSender({ id: 'later', server: open }),
    // One message per hour: everything after the first waits for its pace.
    { ...smtpSender({ id: 'paced', server: open }), rate: { batch_size: 1, interval: '1h' } },
  ];
  return {
    clients: [clientEntry(appKey), clientEntry(otherKey), clientEntry(opsKey)],
    senders,
    delivery: FAST_DELIVERY,
    limits: { held_max_age: '2s' },
  };
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  [gate, open] = await Promise.all([
    startSmtpServer({ security: 'starttls', reply: (ctx) => (ctx.phase === 'data' && refusing ? SEND_AS_DENIED : undefined) }),
    startSmtpServer({ security: 'starttls' }),
  ]);
  stack = await startStack({
    label: 'dead-letters',
    config: config(),
    // Spans to a local receiver: a retried message continues its trace.
    env: {
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '50',
    },
  });
  app = stack.client(appKey.apiKey);
  other = stack.client(otherKey.apiKey);
  ops = stack.client(opsKey.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([gate?.close(), open?.close(), receiver?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

/** Lists until `check` passes: the index follows the status stream a moment behind. */
async function listUntil(
  req: Parameters<TestClient['listMessages']>[0],
  check: (r: ListMessagesResponse) => boolean,
  timeoutMs = 15_000,
): Promise<ListMessagesResponse> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await ops.listMessages(req);
    if (check(r)) return r;
    if (Date.now() > until)
      throw new Error(
        `ListMessages ${JSON.stringify(req)} never matched; last: ${JSON.stringify(r.messages.map((m) => [m.messageId, MessageState[m.state]]))}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('dead letters', () => {
  it('lists a FAILED message with its reason, retries it with the same id and delivers it', async () => {
    refusing = true;
    const traceId = randomBytes(16).toString('hex');
    const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
    const { messageId } = await app.sendMail({ sender: 'gate', to: ['ada@students.campus.example'], subject: 'dead letter', text: 'x' }, { traceparent });
    await waitForState(app, messageId, [MessageState.FAILED]);

    const listed = await listUntil({ state: MessageState.FAILED, sender: 'gate' }, (r) => r.messages.some((m) => m.messageId === messageId));
    const m = listed.messages.find((x) => x.messageId === messageId)!;
    expect(m).toMatchObject({ sender: 'gate', client: 'app', subject: 'dead letter', to: ['ada@students.campus.example'], attempts: 1 });
    expect(m.lastError).toContain('5.7.60');
    expect(m.updatedAt).toBeDefined();

    refusing = false;
    expect((await ops.retryMessages({ messageIds: [messageId] })).count).toBe(1);
    const done = await waitForState(app, messageId, [MessageState.SENT]);
    expect(historyStates(done)).toEqual(['QUEUED', 'SENDING', 'FAILED', 'QUEUED', 'SENDING', 'SENT']);
    expect(done.history.find((h) => h.state === MessageState.QUEUED && h.attempt > 0)?.detail).toBe('retried by ops');
    expect(done.attempts).toBe(2);
    const mail = await waitForMail(gate, messageId);
    expect(mail.parsed.subject).toBe('dead letter');
    expect(mailsWithId(gate, messageId)).toHaveLength(1);
    // The second attempt's delivery is in the caller's trace.
    await receiver.waitForTrace(traceId, (t) => t.some((sp) => sp.service === 'relay-smtp-sender' && sp.attributes['relay.attempt'] === 2));
    // Only FAILED mail is sent again.
    expect((await ops.retryMessages({ messageIds: [messageId] })).count).toBe(0);
  });

  it('filters by sender, client, recipient, state and time, newest first, in pages', async () => {
    const before = new Date(Date.now() - 1_000);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await app.sendMail({ sender: 'ok', to: [`pager${i}@students.campus.example`], subject: `page ${i}`, text: 'x' })).messageId);
    const theirs = (await other.sendMail({ sender: 'ok', to: ['pager-other@students.campus.example'], subject: 'other', text: 'x' })).messageId;
    for (const id of [...ids, theirs]) await waitForState(app, id, [MessageState.SENT]).catch(() => waitForState(other, id, [MessageState.SENT]));
    await listUntil({ state: MessageState.SENT, sender: 'ok' }, (r) => [...ids, theirs].every((id) => r.messages.some((m) => m.messageId === id)));

    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = await ops.listMessages({ sender: 'ok', client: 'app', pageSize: 2, pageToken: token });
      expect(page.messages.length).toBeLessThanOrEqual(2);
      seen.push(...page.messages.map((m) => m.messageId));
      token = page.nextPageToken;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());

    expect((await ops.listMessages({ recipient: 'pager3@students.campus.example' })).messages.map((m) => m.messageId)).toEqual([ids[3]]);
    expect((await ops.listMessages({ client: 'other' })).messages.map((m) => m.messageId)).toEqual([theirs]);
    expect((await ops.listMessages({ sender: 'ok', state: MessageState.FAILED })).messages).toEqual([]);
    expect((await ops.listMessages({ sender: 'ok', since: timestampFromDate(new Date(Date.now() + 60_000)) })).messages).toEqual([]);
    expect((await ops.listMessages({ sender: 'ok', until: timestampFromDate(before) })).messages).toEqual([]);

    expect((await codeOf(ops.listMessages({ pageToken: 'not-a-token' }))).code).toBe(status.INVALID_ARGUMENT);
    const denied = await codeOf(app.listMessages({}));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
  });

  it('cancels queued mail: FAILED "cancelled by <client>", and it is not sent', async () => {
    const at = timestampFromDate(new Date(Date.now() + 3_000));
    const { messageId } = await app.sendMail({ sender: 'later', to: ['cancel@students.campus.example'], subject: 'cancel me', text: 'x', sendAt: at });
    const control = await app.sendMail({ sender: 'later', to: ['control@students.campus.example'], subject: 'control', text: 'x', sendAt: at });
    expect((await ops.cancelMessages({ messageIds: [messageId] })).count).toBe(1);
    const cancelled = await app.getMessage(messageId);
    expect(cancelled.state).toBe(MessageState.FAILED);
    expect(cancelled.lastError).toBe('cancelled by ops');
    // Already FAILED: nothing more to cancel.
    expect((await ops.cancelMessages({ messageIds: [messageId] })).count).toBe(0);

    // The lane meets both when they are due, the cancelled one first.
    await waitForState(app, control.messageId, [MessageState.SENT]);
    await waitForMail(open, control.messageId);
    expect(mailsWithId(open, messageId)).toHaveLength(0);
    expect(historyStates(await app.getMessage(messageId))).toEqual(['QUEUED', 'FAILED']);
  });

  it('retries and cancels by filter as well as by id', async () => {
    refusing = true;
    const failed: string[] = [];
    for (let i = 0; i < 2; i++)
      failed.push((await app.sendMail({ sender: 'gate', to: [`bulk${i}@students.campus.example`], subject: `bulk ${i}`, text: 'x' })).messageId);
    for (const id of failed) await waitForState(app, id, [MessageState.FAILED]);
    await listUntil({ state: MessageState.FAILED, sender: 'gate' }, (r) => failed.every((id) => r.messages.some((m) => m.messageId === id)));
    refusing = false;
    expect((await ops.retryMessages({ state: MessageState.FAILED, sender: 'gate' })).count).toBe(2);
    for (const id of failed) await waitForMail(gate, id);

    const at = timestampFromDate(new Date(Date.now() + 60_000));
    const queued: string[] = [];
    for (let i = 0; i < 2; i++)
      queued.push(
        (await app.sendMail({ sender: 'later', to: [`bulk-later${i}@students.campus.example`], subject: `later ${i}`, text: 'x', sendAt: at })).messageId,
      );
    await listUntil({ state: MessageState.QUEUED, sender: 'later' }, (r) => queued.every((id) => r.messages.some((m) => m.messageId === id)));
    expect((await ops.cancelMessages({ state: MessageState.QUEUED, sender: 'later', recipient: 'bulk-later1@students.campus.example' })).count).toBe(1);
    expect((await app.getMessage(queued[1]!)).lastError).toBe('cancelled by ops');
    expect((await app.getMessage(queued[0]!)).state).toBe(MessageState.QUEUED);
    expect((await ops.cancelMessages({ sender: 'later', state: MessageState.QUEUED })).count).toBe(1);
    expect((await app.getMessage(queued[0]!)).state).toBe(MessageState.FAILED);
  });

  it("a paced sender's backlog that waits longer than limits.held_max_age ends FAILED with the reason", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await app.sendMail({ sender: 'paced', to: [`slow${i}@students.campus.example`], subject: `slow ${i}`, text: 'x' })).messageId);
    await waitForState(app, ids[0]!, [MessageState.SENT]);
    // The second waits in the lane for the next hour's slot, the third behind it in the held stream.
    for (const id of ids.slice(1)) {
      const expired = await waitForState(app, id, [MessageState.FAILED], 20_000);
      expect(expired.lastError).toBe("held longer than limits.held_max_age (2s): waiting for the sender's pace");
      expect(mailsWithId(open, id)).toHaveLength(0);
    }
    // Dead letters stay listed and can be sent again (it then waits for the pace once more).
    await listUntil({ state: MessageState.FAILED, sender: 'paced' }, (r) => r.messages.some((m) => m.messageId === ids[2]));
  });

  it('held mail for a sender the scheduler does not know ends FAILED after limits.held_max_age', async () => {
    // A sender managed through the API, deleted (forced) while a message waits for its send_at.
    const spec = managedSpec(smtpSender({ id: 'ghost', server: open }));
    await ops.admin('putSender', create(PutSenderRequestSchema, { sender: { id: 'ghost', spec: spec as never } }));
    await ops.admin('putClient', create(PutClientRequestSchema, { client: { name: 'ghost-app', spec: { senders: ['ghost'] } } }));
    const key = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'ghost-app' }));
    const ghost = stack.client(key.apiKey);
    const sendAt = timestampFromDate(new Date(Date.now() + 1_000));
    const { messageId } = await ghost.sendMail({ sender: 'ghost', to: ['ghost@students.campus.example'], subject: 'nobody sends me', text: 'x', sendAt });
    await ops.admin('deleteSender', create(DeleteSenderRequestSchema, { id: 'ghost', force: true }));
    const failed = await waitForState(ghost, messageId, [MessageState.FAILED], 20_000);
    expect(failed.lastError).toBe('held longer than limits.held_max_age (2s): its sender is not configured');
    expect(historyStates(failed)).toEqual(['QUEUED', 'FAILED']);
  });
});
