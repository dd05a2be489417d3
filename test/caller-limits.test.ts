import { connectBus, type Bus } from '@relay/bus';
import { MessageState } from '@relay/proto';
import {
  clientEntry,
  codeOf,
  createTestClient,
  dropBus,
  newClient,
  type SendMailInit,
  type ServiceProcess,
  serviceTestEnv,
  smtpSender,
  spawnService,
  status,
  type TestClient,
  testNatsUrl,
  testRedisUrl,
  uniquePrefix,
  writeConfig,
} from '@relay/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Only ingest runs: accepted mail stays stored, as it would behind a slow provider.
const greedy = { ...newClient('greedy-app', ['shared']), limits: { max_stored_messages: 3 } };
const polite = newClient('polite-app', ['shared']);
const bursty = { ...newClient('bursty-app', ['shared']), limits: { messages_per_second: 0.01 } };
const bulky = { ...newClient('bulky-app', ['shared']), limits: { bytes_per_second: 1000 } };
const hoarder = { ...newClient('hoarder-app', ['shared']), limits: { max_stored_bytes: 20_000 } };
const mailer = { ...newClient('mailer-app', ['shared']), limits: { daily_recipients: 3 } };
const prefix = uniquePrefix('limits');
const replicas: ServiceProcess[] = [];
const clients: TestClient[] = [];
let bus: Bus;

const entry = (c: ReturnType<typeof newClient> & { limits?: object }) => ({ ...clientEntry(c), ...(c.limits ? { limits: c.limits } : {}) });
const message = (over: Partial<SendMailInit> = {}): SendMailInit => ({ sender: 'shared', to: ['a@campus.example'], subject: 'limits', text: 'x', ...over });

function client(apiKey: string, replica = 0): TestClient {
  const c = createTestClient(`127.0.0.1:${replicas[replica]!.ports.grpc}`, apiKey);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  const config = {
    clients: [greedy, polite, bursty, bulky, hoarder, mailer].map(entry),
    senders: [smtpSender({ id: 'shared', server: { port: 2 }, security: 'none' })],
  };
  const env = {
    RELAY_CONFIG: writeConfig(config),
    NATS_URL: testNatsUrl(),
    REDIS_URL: testRedisUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_GRPC_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_METRICS_PORT: '0',
    RELAY_HOST: '127.0.0.1',
    ...serviceTestEnv('ingest'),
  };
  // Two replicas: the limits are the client's, not each replica's.
  replicas.push(await spawnService('ingest', { env }), await spawnService('ingest', { env }));
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'caller-limits-test' });
});

afterAll(async () => {
  for (const c of clients) c.close();
  const exits = await Promise.all(replicas.map((r) => r.stop('SIGTERM', 20_000)));
  await bus?.close();
  await dropBus(prefix);
  const redis = new Redis(testRedisUrl());
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  expect(exits).toEqual(exits.map(() => ({ code: 0, signal: null })));
});

describe('per-client limits', () => {
  it('a client cannot fill the store: max_stored_messages across replicas, others unaffected, released once sent', async () => {
    const ids = [];
    ids.push((await client(greedy.apiKey, 0).sendMail(message())).messageId);
    ids.push((await client(greedy.apiKey, 1).sendMail(message())).messageId);
    ids.push((await client(greedy.apiKey, 0).sendMail(message())).messageId);
    const refused = await codeOf(client(greedy.apiKey, 1).sendMail(message()));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).toMatch(/client "greedy-app": limits\.max_stored_messages \(3\) reached/);
    // Another client of the same sender still gets its mail in.
    expect((await client(polite.apiKey, 1).sendMail(message())).state).toBe(MessageState.QUEUED);

    // Once one of them is sent, there is room for one more.
    await bus.publishStatus({ messageId: ids[0]!, sender: 'shared', state: MessageState.SENT, attempt: 1, detail: '250 OK', service: 'relay-smtp-sender' });
    const until = Date.now() + 15_000;
    for (;;) {
      const r = await client(greedy.apiKey, 0)
        .sendMail(message())
        .then(
          () => 'ok',
          (err: { code?: number }) => err.code,
        );
      if (r === 'ok') break;
      expect(r).toBe(status.RESOURCE_EXHAUSTED);
      if (Date.now() > until) throw new Error('the stored quota was not released after SENT');
      await new Promise((res) => setTimeout(res, 100));
    }
    expect((await codeOf(client(greedy.apiKey, 1).sendMail(message()))).code).toBe(status.RESOURCE_EXHAUSTED);
  });

  it('messages_per_second, across replicas', async () => {
    await client(bursty.apiKey, 0).sendMail(message());
    const refused = await codeOf(client(bursty.apiKey, 1).sendMail(message()));
    expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/limits\.messages_per_second \(0\.01\) reached/) });
  });

  const attachment = (n: number) => ({ filename: 'a.bin', contentType: 'application/octet-stream', content: new Uint8Array(n) });

  it('max_stored_bytes', async () => {
    await client(hoarder.apiKey, 0).sendMail(message({ attachments: [attachment(12_000)] }));
    const refused = await codeOf(client(hoarder.apiKey, 1).sendMail(message({ attachments: [attachment(12_000)] })));
    expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/limits\.max_stored_bytes \(20000\) reached/) });
    expect((await client(hoarder.apiKey, 1).sendMail(message({ attachments: [attachment(1_000)] }))).state).toBe(MessageState.QUEUED);
  });

  it('bytes_per_second', async () => {
    // A message larger than a second's worth passes on a full bucket, then the bucket is in debt.
    await client(bulky.apiKey).sendMail(message({ attachments: [attachment(12_000)] }));
    const rate = await codeOf(client(bulky.apiKey).sendMail(message()));
    expect(rate).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/limits\.bytes_per_second \(1000\) reached/) });
  });

  it('daily_recipients keeps one client from using up the shared daily cap', async () => {
    await client(mailer.apiKey).sendMail(message({ to: ['a@campus.example', 'b@campus.example'] }));
    const refused = await codeOf(client(mailer.apiKey).sendMail(message({ to: ['c@campus.example', 'd@campus.example'] })));
    expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/limits\.daily_recipients \(3\) reached/) });
    expect((await client(mailer.apiKey).sendMail(message({ to: ['c@campus.example'] }))).state).toBe(MessageState.QUEUED);
  });
});
