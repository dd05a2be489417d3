import { writeFileSync } from 'node:fs';
import { create, toJsonString } from '@bufbuild/protobuf';
import { connect } from '@nats-io/transport-node';
import { busNames } from '@relay/bus';
import {
  AdminService,
  CreateApiKeyRequestSchema,
  DeleteSenderRequestSchema,
  GetSenderRequestSchema,
  GetSenderResponseSchema,
  ListClientsRequestSchema,
  ListSendersRequestSchema,
  MessageState,
  PutClientRequestSchema,
  PutSenderRequestSchema,
  RevokeApiKeyRequestSchema,
  SetSenderSecretRequestSchema,
  type CreateApiKeyResponse,
  type GetSenderResponse,
  type ListClientsResponse,
  type ListSendersResponse,
  type PutClientResponse,
  type PutSenderResponse,
} from '@relay/proto';
import {
  clientEntry,
  codeOf,
  eventually,
  FAST_DELIVERY,
  managedSpec,
  mailsWithId,
  newClient,
  smtpSender,
  type Stack,
  startSmtpServer,
  startStack,
  status,
  testNatsUrl,
  testRedisUrl,
  type TestClient,
  type TestSmtpServer,
  waitForState,
} from '@relay/testkit';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Senders and clients managed at runtime: created through AdminService, in force on every
// replica within seconds, secrets kept only by relay-credentials.

let open: TestSmtpServer;
let authed: TestSmtpServer;
let stack: Stack;
let ops: TestClient;
let app: TestClient;
const opsKey = newClient('ops', [], true);
const appKey = newClient('app', ['desk']);
const SECRET = `pw-${'s3cr3t'.repeat(6)}`;
let configPath: string;

const fileConfig = (extra: { senders?: object[]; clients?: object[] } = {}) => ({
  clients: [clientEntry(opsKey), clientEntry(appKey), ...(extra.clients ?? [])],
  senders: [smtpSender({ id: 'desk', server: open }), ...(extra.senders ?? [])],
  delivery: FAST_DELIVERY,
});

/** A sender's settings as an operator writes them (relay.yaml's senders: entry), for this test's SMTP servers. */
const senderSpec = (server: TestSmtpServer, extra: Record<string, unknown> = {}): Record<string, unknown> & { smtp: Record<string, unknown> } => ({
  ...managedSpec(smtpSender({ id: 'x', server })),
  from: 'dept@campus.example',
  ...extra,
});

const put = (id: string, spec: object, etag = '') =>
  ops.admin<PutSenderResponse>('putSender', create(PutSenderRequestSchema, { sender: { id, spec: spec as never, etag } }));
const getSender = (id: string) => ops.admin<GetSenderResponse>('getSender', create(GetSenderRequestSchema, { id }));

/** A Redis key's whole value as text, whatever its type. */
async function redisValue(redis: Redis, key: string): Promise<string> {
  const type = await redis.type(key);
  const read: Record<string, () => Promise<unknown>> = {
    string: () => redis.get(key),
    hash: () => redis.hgetall(key),
    list: () => redis.lrange(key, 0, -1),
    set: () => redis.smembers(key),
    zset: () => redis.zrange(key, '0', '-1', 'WITHSCORES'),
    stream: () => redis.xrange(key, '-', '+'),
  };
  const reader = read[type];
  if (!reader) throw new Error(`key ${key}: Redis type ${type} is not read by this test`);
  return JSON.stringify(await reader());
}

beforeAll(async () => {
  [open, authed] = await Promise.all([startSmtpServer({ security: 'starttls' }), startSmtpServer({ security: 'starttls', users: { dept: SECRET } })]);
  stack = await startStack({ label: 'registry', config: fileConfig(), smtpSenders: 2 });
  configPath = stack.env.RELAY_CONFIG!;
  ops = stack.client(opsKey.apiKey);
  app = stack.client(appKey.apiKey);
}, 90_000);

afterAll(async () => {
  await stack?.stop();
  await Promise.all([open?.close(), authed?.close()]);
});

describe('the registry through AdminService', () => {
  it("lists relay.yaml's senders as managed_by file, read-only", async () => {
    const list = await ops.admin<ListSendersResponse>('listSenders', create(ListSendersRequestSchema, {}));
    const desk = list.senders.find((s) => s.id === 'desk');
    expect(desk?.managedBy).toBe('file');
    expect(desk?.spec?.from).toBe('desk@campus.example');
    const refused = await codeOf(put('desk', senderSpec(open)));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toContain('managed_by: file');
    expect((await codeOf(app.admin('listSenders', create(ListSendersRequestSchema, {})))).code).toBe(status.PERMISSION_DENIED);
  });

  it('creates a sender and a client whose new key delivers through it on every replica', async () => {
    const created = await put('dept', senderSpec(open));
    expect(created.created).toBe(true);
    expect(created.sender?.managedBy).toBe('api');
    const client = await ops.admin<PutClientResponse>(
      'putClient',
      create(PutClientRequestSchema, { client: { name: 'dept-app', spec: { senders: ['dept'] } } }),
    );
    expect(client.client?.managedBy).toBe('api');
    const key = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'dept-app' }));
    expect(key.apiKey).toMatch(/^rk_/);
    const dept = stack.client(key.apiKey);
    // Both smtp-sender replicas take from the same consumer: every message goes out on its first attempt.
    const ids = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => (await dept.sendMail({ sender: 'dept', to: ['a@example.org'], subject: `n${i}`, text: 'x' })).messageId),
    );
    for (const id of ids) {
      const done = await waitForState(dept, id, [MessageState.SENT]);
      expect(done.attempts).toBe(1);
      expect(mailsWithId(open, id)).toHaveLength(1);
    }
    const clients = await ops.admin<ListClientsResponse>('listClients', create(ListClientsRequestSchema, {}));
    const listed = clients.clients.find((c) => c.name === 'dept-app');
    expect(listed?.apiKeys.map((k) => k.id)).toEqual([key.key?.id]);
    // Only a digest is kept: the key is nowhere in what the API answers.
    expect(toJsonString(AdminService.method.listClients.output, clients)).not.toContain(key.apiKey);
  });

  it('updates only the version named by its etag, and creates only what does not exist', async () => {
    const first = await put('etagged', senderSpec(open));
    const again = await codeOf(put('etagged', senderSpec(open)));
    expect(again.code).toBe(status.ALREADY_EXISTS);
    const second = await put('etagged', senderSpec(open, { reply_to: 'desk@campus.example' }), first.sender!.etag);
    expect(second.sender?.spec?.reply_to).toBe('desk@campus.example');
    const stale = await codeOf(put('etagged', senderSpec(open), first.sender!.etag));
    expect(stale.code).toBe(status.ABORTED);
  });

  it('checks settings with the same rules and messages as relay.yaml', async () => {
    const port = await codeOf(put('bad', { ...senderSpec(open), smtp: { ...senderSpec(open).smtp, port: '587' } }));
    expect(port.code).toBe(status.INVALID_ARGUMENT);
    expect(port.details).toBe('smtp.port: expected a number, got the string "587"');
    const secret = await codeOf(put('bad', senderSpec(open, { smtp: { ...senderSpec(open).smtp, auth: { type: 'password', user: 'u', password: 'p' } } })));
    expect(secret.details).toBe("smtp.auth.password: secrets are not accepted in a sender's settings; set it with SetSenderSecret (relay senders set-secret)");
    const { from: _from, ...noFrom } = senderSpec(open);
    const typo = await codeOf(put('bad', { ...noFrom, form: 'x@campus.example' }));
    expect(typo.details).toBe('form: unknown key; did you mean "from"?');
    const unknownSender = await codeOf(ops.admin('putClient', create(PutClientRequestSchema, { client: { name: 'lost', spec: { senders: ['nowhere'] } } })));
    expect(unknownSender.details).toContain('senders[0]: "nowhere" is not a configured sender');
  });

  it('checks a sender without storing it when validate_only is set', async () => {
    const check = (id: string, spec: object, etag = '') =>
      ops.admin<PutSenderResponse>('putSender', create(PutSenderRequestSchema, { sender: { id, spec: spec as never, etag }, validateOnly: true }));
    const fresh = await check('checked', senderSpec(open));
    expect(fresh).toMatchObject({ created: true, sender: { id: 'checked', managedBy: 'api', etag: '' } });
    expect((await codeOf(getSender('checked'))).code).toBe(status.NOT_FOUND);
    // The same answers as a real PutSender, field messages included.
    const badPort = { ...senderSpec(open), smtp: { ...senderSpec(open).smtp, port: '587' } };
    const [checked, real] = await Promise.all([codeOf(check('checked', badPort)), codeOf(put('checked', badPort))]);
    expect(checked).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'smtp.port: expected a number, got the string "587"' });
    expect(checked.details).toBe(real.details);
    expect((await codeOf(check('bad id!', senderSpec(open)))).details).toBe('sender.id: must be 1-64 letters, digits, "-" or "_"');
    expect((await codeOf(check('desk', senderSpec(open)))).code).toBe(status.FAILED_PRECONDITION);
    const stored = await put('checked-later', senderSpec(open));
    expect((await codeOf(check('checked-later', senderSpec(open)))).code).toBe(status.ALREADY_EXISTS);
    const update = await check('checked-later', senderSpec(open, { reply_to: 'desk@campus.example' }), stored.sender!.etag);
    expect(update).toMatchObject({ created: false, sender: { etag: stored.sender!.etag, spec: { reply_to: 'desk@campus.example' } } });
    const after = await getSender('checked-later');
    expect(after.sender?.etag).toBe(stored.sender!.etag);
    expect(after.sender?.spec?.reply_to).toBeUndefined();
    const changed = await put('checked-later', senderSpec(open), stored.sender!.etag);
    expect((await codeOf(check('checked-later', senderSpec(open), stored.sender!.etag))).code).toBe(status.ABORTED);
    expect(changed.sender?.etag).not.toBe(stored.sender!.etag);
  });

  it('keeps a secret set through the API sealed in relay-credentials, never readable back', async () => {
    await put('locked', senderSpec(authed, { smtp: { ...senderSpec(authed).smtp, auth: { type: 'password', user: 'dept' } } }));
    await ops.admin('putClient', create(PutClientRequestSchema, { client: { name: 'locked-app', spec: { senders: ['locked'] } } }));
    const key = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'locked-app' }));
    const locked = stack.client(key.apiKey);
    // Without its password the message waits, saying what to do.
    const { messageId } = await locked.sendMail({ sender: 'locked', to: ['b@example.org'], subject: 's', text: 'x' });
    const waiting = await waitForState(locked, messageId, [MessageState.RETRYING]);
    expect(waiting.lastError).toContain('smtp.auth.password is not set; set it with SetSenderSecret');
    const wrongField = await codeOf(
      ops.admin('setSenderSecret', create(SetSenderSecretRequestSchema, { id: 'locked', field: 'graph.client_secret', value: 'x' })),
    );
    expect(wrongField.code).toBe(status.INVALID_ARGUMENT);
    await ops.admin('setSenderSecret', create(SetSenderSecretRequestSchema, { id: 'locked', field: 'smtp.auth.password', value: SECRET }));
    await waitForState(locked, messageId, [MessageState.SENT], 30_000);
    expect(authed.authAttempts.some((a) => a.accepted && a.username === 'dept')).toBe(true);

    const shown = await getSender('locked');
    expect(shown.sender?.secrets).toEqual([expect.objectContaining({ field: 'smtp.auth.password', set: true, setBy: 'ops' })]);
    expect(toJsonString(GetSenderResponseSchema, shown)).not.toContain(SECRET);
    // In no stream or bucket in clear, no Redis key or value, no service's log.
    const nc = await connect({ servers: testNatsUrl() });
    try {
      const { jetstreamManager } = await import('@nats-io/jetstream');
      const jsm = await jetstreamManager(nc);
      const n = busNames(stack.prefix);
      for (const stream of [`KV_${n.sendersBucket}`, `KV_${n.clientsBucket}`, `KV_${stack.prefix}-secrets`, n.statusStream, n.submittedStream]) {
        const info = await jsm.streams.info(stream);
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const m = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
          if (m) expect(Buffer.from(m.data).includes(SECRET), `${stream} #${seq}`).toBe(false);
        }
      }
    } finally {
      await nc.close();
    }
    const redis = new Redis(testRedisUrl());
    try {
      for (const k of await redis.keys(`${stack.prefix}*`)) {
        expect(k).not.toContain(SECRET);
        expect(await redisValue(redis, k), k).not.toContain(SECRET);
      }
    } finally {
      redis.disconnect();
    }
    for (const p of [stack.credentials, stack.ingest, stack.scheduler, ...stack.smtpSenders]) expect(p.logs.join('\n')).not.toContain(SECRET);

    // Pointed at another server, the sender does not take its password there: it must be set again.
    const spec = shown.sender!.spec as { smtp: Record<string, unknown> };
    await put('locked', { ...spec, smtp: { ...spec.smtp, host: 'localhost' } }, shown.sender!.etag);
    expect((await getSender('locked')).sender?.secrets).toEqual([expect.objectContaining({ field: 'smtp.auth.password', set: false })]);
    const again = await locked.sendMail({ sender: 'locked', to: ['b@example.org'], subject: 's2', text: 'x' });
    expect((await waitForState(locked, again.messageId, [MessageState.RETRYING])).lastError).toContain('smtp.auth.password is not set');
  });

  it('rotates a key with an overlap, and revokes one at once', async () => {
    await ops.admin('putClient', create(PutClientRequestSchema, { client: { name: 'rotating', spec: { senders: ['desk'] } } }));
    const old = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'rotating' }));
    const next = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'rotating', expireOthersAfterSeconds: 2 }));
    const send = (key: string) => app.sendMail({ sender: 'desk', to: ['c@example.org'], subject: 'r', text: 'x' }, { apiKey: key });
    await send(old.apiKey);
    await send(next.apiKey);
    const expired = await eventually(async () => {
      const r = await codeOf(send(old.apiKey)).catch(() => undefined);
      return r?.code === status.UNAUTHENTICATED ? r : undefined;
    }, 15_000);
    expect(expired.details).toContain('expired');
    await send(next.apiKey);
    await ops.admin('revokeApiKey', create(RevokeApiKeyRequestSchema, { client: 'rotating', keyId: next.key!.id }));
    expect((await codeOf(send(next.apiKey))).code).toBe(status.UNAUTHENTICATED);
    const missing = await codeOf(ops.admin('revokeApiKey', create(RevokeApiKeyRequestSchema, { client: 'rotating', keyId: 'nope' })));
    expect(missing.code).toBe(status.NOT_FOUND);
  });

  it("enforces a managed client's limits, though no client had any when ingest started", async () => {
    await ops.admin('putClient', create(PutClientRequestSchema, { client: { name: 'capped', spec: { senders: ['desk'], limits: { daily_recipients: 1 } } } }));
    const key = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'capped' }));
    const capped = stack.client(key.apiKey);
    const send = () => capped.sendMail({ sender: 'desk', to: ['f@example.org'], subject: 'cap', text: 'x' });
    await send();
    const over = await codeOf(send());
    expect(over.code).toBe(status.RESOURCE_EXHAUSTED);
  });

  it('refuses to delete a sender while mail is queued for it, unless forced', async () => {
    // One message per hour: the second waits in the held stream.
    await put('slow', senderSpec(open, { rate: { batch_size: 1, interval: '1h' } }));
    await ops.admin('putClient', create(PutClientRequestSchema, { client: { name: 'slow-app', spec: { senders: ['slow'] } } }));
    const key = await ops.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'slow-app' }));
    const slow = stack.client(key.apiKey);
    for (const i of [1, 2]) await slow.sendMail({ sender: 'slow', to: ['d@example.org'], subject: `s${i}`, text: 'x' });
    const refused = await eventually(async () => {
      const r = await codeOf(ops.admin('deleteSender', create(DeleteSenderRequestSchema, { id: 'slow' }))).catch(() => undefined);
      return r?.code === status.FAILED_PRECONDITION ? r : undefined;
    });
    expect(refused.details).toMatch(/message\(s\) are queued for sender "slow"/);
    await ops.admin('deleteSender', create(DeleteSenderRequestSchema, { id: 'slow', force: true }));
    expect((await codeOf(getSender('slow'))).code).toBe(status.NOT_FOUND);
  });
});

describe('relay.yaml edits', () => {
  it('take effect on every service without a restart', async () => {
    const late = newClient('late', ['added']);
    writeFileSync(configPath, stringify(fileConfig({ senders: [smtpSender({ id: 'added', server: open })], clients: [clientEntry(late)] })));
    const client = stack.client(late.apiKey);
    const { messageId } = await eventually(
      () => client.sendMail({ sender: 'added', to: ['e@example.org'], subject: 'late', text: 'x' }).catch(() => undefined),
      20_000,
    );
    // Each service reads the file on its own within seconds; until then the message waits and retries.
    await waitForState(client, messageId, [MessageState.SENT], 30_000);
    expect(mailsWithId(open, messageId)).toHaveLength(1);
  });
});
