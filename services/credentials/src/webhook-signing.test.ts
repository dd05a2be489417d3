import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { connectBus, secretsBucketName, type Bus } from '@relay/bus';
import type { ClientConfig, RelayConfig } from '@relay/config';
import { ErrorCode, isRelayError } from '@relay/core';
import { CreateWebhookSecretRequestSchema, SignWebhookRequestSchema } from '@relay/proto';
import { openRegistry, type ClientRecord, type RegistryStore } from '@relay/registry';
import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from './secret-box.js';
import { openWebhookSecrets } from './webhook-secrets.js';
import { createWebhookSigning, MAX_WEBHOOK_PAYLOAD_BYTES } from './webhook-signing.js';

const URL_A = 'https://portal.campus.example/hooks/relay?token=abc';
let bus: Bus;
let prefix: string;
let registry: RegistryStore;
let clock = Date.parse('2026-12-05T10:00:00Z');
const logged: object[] = [];
const client = (name: string, managedBy: 'api' | 'file', urls: string[]): ClientConfig => ({
  name,
  apiKey: undefined,
  managedBy,
  senders: [],
  admin: false,
  limits: { messagesPerSecond: undefined, bytesPerSecond: undefined, maxStoredMessages: undefined, maxStoredBytes: undefined, dailyRecipients: undefined },
  webhooks: urls.map((url) => ({ url, events: ['sent'] })),
});
const config = { clients: [client('portal', 'api', [URL_A]), client('sis', 'file', [URL_A])] } as unknown as RelayConfig;
let signing: ReturnType<typeof createWebhookSigning>;

beforeAll(async () => {
  prefix = uniquePrefix('whsign');
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'webhook-signing-test' });
  registry = await openRegistry(bus);
  const record: ClientRecord = { spec: { senders: [], webhooks: [{ url: URL_A, events: ['sent'] }] }, keys: [], updated_at: '', updated_by: 'ops' };
  await registry.clients.put('portal', JSON.stringify(record));
  const secrets = await openWebhookSecrets(bus, createSecretBox(randomBytes(32)));
  signing = createWebhookSigning({ secrets, live: { current: () => config, store: registry }, logger: { info: (o) => void logged.push(o) }, now: () => clock });
});

afterAll(async () => {
  await bus.close();
  await dropBus(prefix);
});

const signReq = (over: Partial<{ client: string; url: string; id: string; timestamp: bigint; payload: Uint8Array }> = {}) =>
  create(SignWebhookRequestSchema, {
    client: 'portal',
    url: URL_A,
    id: 'evt_1',
    timestamp: BigInt(Math.floor(clock / 1000)),
    payload: new TextEncoder().encode('{"type":"message.sent"}'),
    ...over,
  });
const headers = (signature: string) => ({ 'webhook-id': 'evt_1', 'webhook-timestamp': String(Math.floor(clock / 1000)), 'webhook-signature': signature });
/** Verifies at the test's clock: the library compares the timestamp with its own now. */
const verifies = (secret: string, signature: string) => {
  try {
    new Webhook(secret).verify('{"type":"message.sent"}', headers(signature));
    return true;
  } catch {
    return false;
  }
};

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (isRelayError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('not refused');
}

describe('webhook secrets of clients managed through the API', () => {
  it('signs nothing before a secret is made, and says how to make one', async () => {
    expect(await refusal(signing.sign(signReq()))).toEqual({
      code: ErrorCode.FailedPrecondition,
      message: 'webhook https://portal.campus.example/hooks/relay of client "portal" has no signing secret; run relay webhooks secret portal <url>',
    });
  });

  it('makes a whsec_ secret of 32 random bytes, and signs with it what the library verifies', async () => {
    clock = Date.now();
    const made = await signing.create(create(CreateWebhookSecretRequestSchema, { client: 'portal', url: URL_A }));
    expect(made.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(made.secret.slice(6), 'base64')).toHaveLength(32);
    expect(made.previousUntil).toBeUndefined();
    const signature = await signing.sign(signReq());
    expect(signature.split(' ')).toHaveLength(1);
    expect(verifies(made.secret, signature)).toBe(true);
    expect(verifies(`whsec_${randomBytes(32).toString('base64')}`, signature)).toBe(false);
    // Stored sealed: the bucket's value holds no part of the secret.
    const kv = await bus.js.streams.get(`KV_${secretsBucketName(prefix)}`);
    const raw = await kv.getMessage({ last_by_subj: `$KV.${secretsBucketName(prefix)}.>` });
    expect(raw?.string()).toContain('"current"');
    expect(raw?.string()).not.toContain(made.secret.slice(6, 30));
    expect(JSON.stringify(logged)).not.toContain(made.secret.slice(6, 30));
    expect(JSON.stringify(logged)).not.toContain('token=abc');
  });

  it('signs with the new and the replaced secret until the rotation window ends', async () => {
    clock = Date.now();
    const old = await signing.create(create(CreateWebhookSecretRequestSchema, { client: 'portal', url: URL_A, keepPreviousSeconds: 0 }));
    // Until the registry lists the webhook's secret (ingest records it after each call), none is kept as the previous one.
    const unlisted = await signing.create(create(CreateWebhookSecretRequestSchema, { client: 'portal', url: URL_A, keepPreviousSeconds: 3_600 }));
    expect(unlisted.previousUntil).toBeUndefined();
    expect((await signing.sign(signReq())).split(' ')).toHaveLength(1);
    const listed: ClientRecord = {
      spec: { senders: [], webhooks: [{ url: URL_A, events: ['sent'] }] },
      keys: [],
      webhook_secrets: { [URL_A]: { created_at: new Date(clock).toISOString(), created_by: 'ops' } },
      updated_at: '',
      updated_by: 'ops',
    };
    await registry.clients.put('portal', JSON.stringify(listed));
    const made = await signing.create(create(CreateWebhookSecretRequestSchema, { client: 'portal', url: URL_A, keepPreviousSeconds: 3_600 }));
    expect(made.previousUntil?.getTime()).toBe(clock + 3_600_000);
    const both = await signing.sign(signReq());
    expect(both.split(' ')).toHaveLength(2);
    expect([verifies(made.secret, both), verifies(unlisted.secret, both), verifies(old.secret, both)]).toEqual([true, true, false]);
    // An hour on, only the new one signs (compared by recomputing: the library's verify checks the timestamp against its own clock).
    clock += 3_600_001;
    const after = await signing.sign(signReq());
    expect(after).toBe(new Webhook(made.secret).sign('evt_1', new Date(clock), '{"type":"message.sent"}'));
  });

  it('refuses what it must not sign or make', async () => {
    clock = Date.now();
    const big = new Uint8Array(MAX_WEBHOOK_PAYLOAD_BYTES + 1);
    expect(await refusal(signing.sign(signReq({ payload: big })))).toMatchObject({
      code: ErrorCode.InvalidArgument,
      message: expect.stringMatching(/^payload: /),
    });
    const stale = BigInt(Math.floor(clock / 1000) - 600);
    expect(await refusal(signing.sign(signReq({ timestamp: stale })))).toMatchObject({
      code: ErrorCode.InvalidArgument,
      message: expect.stringMatching(/^timestamp: /),
    });
    expect(await refusal(signing.sign(signReq({ id: '' })))).toMatchObject({ code: ErrorCode.InvalidArgument });
    expect(await refusal(signing.sign(signReq({ client: 'bad name' })))).toMatchObject({ code: ErrorCode.InvalidArgument });
    expect(await refusal(signing.sign(signReq({ url: 'https://other.example/h' })))).toMatchObject({ code: ErrorCode.NotFound });
    expect(await refusal(signing.sign(signReq({ client: 'sis' })))).toMatchObject({ code: ErrorCode.FailedPrecondition });
    expect(await refusal(signing.sign(signReq({ client: 'nobody' })))).toMatchObject({ code: ErrorCode.NotFound });
    const makeFor = (c: string, url: string, keep?: number) =>
      signing.create(create(CreateWebhookSecretRequestSchema, { client: c, url, ...(keep === undefined ? {} : { keepPreviousSeconds: keep }) }));
    expect(await refusal(makeFor('sis', URL_A))).toMatchObject({ code: ErrorCode.FailedPrecondition, message: expect.stringContaining('relay.yaml') });
    expect(await refusal(makeFor('portal', 'https://other.example/h'))).toEqual({
      code: ErrorCode.NotFound,
      message:
        'client "portal" has no webhook with url https://other.example/h (its webhooks: https://portal.campus.example/hooks/relay); add it with PutClient first',
    });
    expect(await refusal(makeFor('nobody', URL_A))).toMatchObject({ code: ErrorCode.NotFound });
    expect(await refusal(makeFor('portal', URL_A, 31 * 86_400))).toMatchObject({ code: ErrorCode.InvalidArgument });
  });
});
