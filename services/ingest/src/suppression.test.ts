import { connectBus, openSuppressionBucket, recordDeliveryReport, suppressionKey, type Bus, type SuppressionEntry } from '@relay/bus';
import { parseConfig, readEnv } from '@relay/config';
import { create } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import {
  DeleteSuppressionRequestSchema,
  ListSuppressionsRequestSchema,
  MessageState,
  type DeleteSuppressionResponse,
  type ListSuppressionsResponse,
} from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import {
  clientEntry,
  codeOf,
  createTestClient,
  dropBus,
  newClient,
  serviceTestEnv,
  status,
  submit,
  testCa,
  testNatsUrl,
  uniquePrefix,
  type TestClient,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createIngest } from './ingest.js';

const DAY = 86_400_000;
const prefix = uniquePrefix('supp');
const refuser = newClient('refuser', ['plain']);
const flagger = newClient('flagger', ['plain']);
const plainClient = newClient('plain-client', ['plain']);
const opsClient = newClient('ops', [], true);
const config = parseConfig(
  stringify({
    clients: [
      { ...clientEntry(refuser), suppression: { mode: 'refuse', for: '30d' }, smtp: { allow_ips: ['127.0.0.1'] } },
      { ...clientEntry(flagger), suppression: { mode: 'flag' }, smtp: { username: 'flagger', password: 'env:FLAGGER_SMTP_PASSWORD' } },
      clientEntry(plainClient),
      clientEntry(opsClient),
    ],
    senders: [{ id: 'plain', from: 'plain@campus.example', transport: 'smtp', smtp: { host: 'mail.campus.example', port: 587, security: 'starttls' } }],
  }),
  { FLAGGER_SMTP_PASSWORD: 'flagger-password-0123456789' },
);

let bus: Bus;
let ingest: Awaited<ReturnType<typeof createIngest>>;
let clients: Record<'refuser' | 'flagger' | 'plain' | 'ops', TestClient>;
let smtpPort: number;
const bouncedAt = Date.now() - 2 * DAY;

async function putEntry(entry: SuppressionEntry) {
  const kv = await openSuppressionBucket(bus);
  await kv.put(suppressionKey(entry.address), JSON.stringify(entry));
}

beforeAll(async () => {
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'suppression-test' });
  const base = { status: '5.1.1', diagnostic: '550 5.1.1 User unknown', message_id: 'm-1', sender: 'plain' };
  await putEntry({ ...base, address: 'gone@students.example', at: bouncedAt });
  // Older than the refusing client's 30d: no longer counts.
  await putEntry({ ...base, address: 'old@students.example', at: Date.now() - 40 * DAY });
  const env = readEnv({
    NATS_URL: testNatsUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_GRPC_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_METRICS_PORT: '0',
    RELAY_SMTP_PORT: '0',
    RELAY_TLS_CERT: testCa().certFile,
    RELAY_TLS_KEY: testCa().keyFile,
    RELAY_HOST: '127.0.0.1',
    ...serviceTestEnv('ingest'),
  });
  ingest = await createIngest({ env, config, logger: createLogger({ service: 'test', level: 'silent' }) });
  const ports = (await ingest.start()) as { grpc: number; smtp: number };
  smtpPort = ports.smtp;
  const at = (c: { apiKey: string }) => createTestClient(`127.0.0.1:${ports.grpc}`, c.apiKey, { caPem: testCa().caPem });
  clients = { refuser: at(refuser), flagger: at(flagger), plain: at(plainClient), ops: at(opsClient) };
});

afterAll(async () => {
  for (const c of Object.values(clients ?? {})) c.close();
  await ingest?.stop();
  await bus?.close();
  await dropBus(prefix);
});

const mail = (to: string[], cc: string[] = []) => ({ sender: 'plain', to, cc, subject: 'Notice', text: 'hello' });
const queuedDetail = async (id: string) => (await bus.history(id)).find((e) => e.state === MessageState.QUEUED)?.detail;
const when = new Date(bouncedAt).toISOString();

describe('recording hard bounces', () => {
  it('puts a 5.x.x bounce in the suppression bucket (lower-cased), and not a 4.x.x delay', async () => {
    const id = '01890000-0000-7000-8000-00000000a001';
    const base = { messageId: id, sender: 'plain', service: 'test' };
    await bus.publishStatus({
      ...base,
      state: MessageState.QUEUED,
      attempt: 0,
      detail: 'accepted',
      client: 'app',
      subject: 'hi',
      to: ['x', 'y'],
      recipientCount: 2,
    });
    await bus.publishStatus({ ...base, state: MessageState.SENT, attempt: 1, detail: '250 OK' });
    const date = new Date('2026-11-30T10:00:00Z');
    const result = await recordDeliveryReport(
      bus,
      {
        relayMessageId: id,
        date,
        recipients: [
          { recipient: 'Nobody@Students.Example', outcome: 'bounced', status: '5.1.1', diagnostic: '550 5.1.1 User unknown' },
          { recipient: 'later@students.example', outcome: 'delayed', status: '4.4.7', diagnostic: 'still trying' },
          { recipient: 'full@students.example', outcome: 'bounced', status: '4.2.2', diagnostic: 'mailbox full' },
        ],
      },
      'test',
    );
    expect(result).toMatchObject({ recorded: true });
    const kv = await openSuppressionBucket(bus);
    const got = await kv.get(suppressionKey('nobody@students.example'));
    expect(got?.json()).toEqual({
      address: 'nobody@students.example',
      at: date.getTime(),
      status: '5.1.1',
      diagnostic: '550 5.1.1 User unknown',
      message_id: id,
      sender: 'plain',
    });
    expect(await kv.get(suppressionKey('later@students.example'))).toBeNull();
    expect(await kv.get(suppressionKey('full@students.example'))).toBeNull();
  });
});

describe('SendMail with suppression', () => {
  it('mode refuse: FAILED_PRECONDITION naming the recipient, when, status, diagnostic and how to clear it', async () => {
    const refused = await codeOf(clients.refuser.sendMail(mail(['ada@campus.example'], ['Gone@Students.example'])));
    expect(refused).toEqual({
      code: status.FAILED_PRECONDITION,
      details:
        `cc[0]: <Gone@Students.example> hard-bounced at ${when} (5.1.1: 550 5.1.1 User unknown) and client "refuser" refuses recipients that hard-bounced within 30d (suppression.mode: refuse); ` +
        `once the address works again, clear it with: relay suppressions remove gone@students.example (or nats kv del ${prefix}-suppressed ${suppressionKey('gone@students.example')})`,
    });
  });

  it("ignores an entry older than the client's for", async () => {
    const { messageId } = await clients.refuser.sendMail(mail(['old@students.example']));
    expect(await queuedDetail(messageId)).toBe('accepted');
  });

  it('mode flag: accepts, and the QUEUED event notes the suppressed recipient', async () => {
    const { messageId } = await clients.flagger.sendMail(mail(['ada@campus.example', 'gone@students.example']));
    expect(await queuedDetail(messageId)).toBe(
      `accepted; suppressed recipient <gone@students.example> hard-bounced at ${when} (5.1.1: 550 5.1.1 User unknown)`,
    );
  });

  it('a client without suppression is unaffected', async () => {
    const { messageId } = await clients.plain.sendMail(mail(['gone@students.example']));
    expect(await queuedDetail(messageId)).toBe('accepted');
  });

  it('a bounce recorded while ingest runs is refused once the watch has it', async () => {
    await putEntry({ address: 'new@students.example', at: Date.now(), status: '5.1.1', diagnostic: '', message_id: 'm-2', sender: 'plain' });
    let code: number | undefined;
    for (let i = 0; i < 50 && code !== status.FAILED_PRECONDITION; i++) {
      code = (await codeOf(clients.refuser.sendMail(mail(['new@students.example']))).catch(() => ({ code: status.OK }))).code;
      if (code !== status.FAILED_PRECONDITION) await new Promise((r) => setTimeout(r, 100));
    }
    expect(code).toBe(status.FAILED_PRECONDITION);
  });

  it('the SMTP door refuses the recipient at RCPT TO with 550 5.1.1 and takes the others', async () => {
    const raw = Buffer.from('From: plain@campus.example\r\nTo: ada@campus.example\r\nSubject: Notice\r\n\r\nhello\r\n');
    const got = await submit({
      port: smtpPort,
      security: 'starttls',
      envelope: { from: 'plain@campus.example', to: ['ada@campus.example', 'gone@students.example'] },
      raw,
    });
    expect(got.ok).toBe(true);
    expect(got.ok && got.rejected).toEqual(['gone@students.example']);
    expect(got.ok && got.rejectedResponses).toEqual([
      `550 5.1.1 Recipient <gone@students.example> hard-bounced at ${when} (5.1.1: 550 5.1.1 User unknown) and client "refuser" refuses recipients that hard-bounced within 30d (suppression.mode: refuse); ` +
        `once the address works again, clear it with: relay suppressions remove gone@students.example (or nats kv del ${prefix}-suppressed ${suppressionKey('gone@students.example')})`,
    ]);
  });
});

describe('ListSuppressions and DeleteSuppression', () => {
  const list = (req: { address?: string; limit?: number }, as = clients.ops) =>
    as.admin<ListSuppressionsResponse>('listSuppressions', create(ListSuppressionsRequestSchema, req));
  const remove = (address: string, as = clients.ops) =>
    as.admin<DeleteSuppressionResponse>('deleteSuppression', create(DeleteSuppressionRequestSchema, { address }));

  it('lists one address (any case) with its bounce and key; admin clients only', async () => {
    const res = await list({ address: 'GONE@students.example' });
    expect(res.total).toBe(1n);
    const [e] = res.suppressions;
    expect([e?.address, timestampDate(e!.at!).getTime(), e?.status, e?.diagnostic, e?.messageId, e?.sender, e?.key]).toEqual([
      'gone@students.example',
      bouncedAt,
      '5.1.1',
      '550 5.1.1 User unknown',
      'm-1',
      'plain',
      suppressionKey('gone@students.example'),
    ]);
    expect((await codeOf(list({}, clients.refuser))).code).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(list({ address: 'not an address' }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^address: /) });
  });

  it('lists every entry newest first, up to limit', async () => {
    const res = await list({ limit: 2 });
    expect(res.total).toBeGreaterThanOrEqual(3n);
    expect(res.suppressions).toHaveLength(2);
    const [a, b] = res.suppressions.map((e) => timestampDate(e.at!).getTime());
    expect(a).toBeGreaterThanOrEqual(b!);
  });

  it('deletes an entry: the recipient is taken again; a second delete says there was none', async () => {
    await putEntry({ address: 'back@students.example', at: Date.now(), status: '5.1.1', diagnostic: '', message_id: 'm-3', sender: 'plain' });
    for (let i = 0; i < 50 && (await list({ address: 'back@students.example' })).total === 0n; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await codeOf(clients.refuser.sendMail(mail(['back@students.example'])))).code).toBe(status.FAILED_PRECONDITION);
    expect((await codeOf(remove('back@students.example', clients.refuser))).code).toBe(status.PERMISSION_DENIED);
    expect(await remove('Back@Students.example')).toMatchObject({ deleted: true });
    expect((await clients.refuser.sendMail(mail(['back@students.example']))).messageId).toBeTruthy();
    expect(await (await openSuppressionBucket(bus)).get(suppressionKey('back@students.example'))).toMatchObject({ operation: 'DEL' });
    expect(await remove('back@students.example')).toMatchObject({ deleted: false });
    expect(await codeOf(remove(''))).toEqual({ code: status.INVALID_ARGUMENT, details: 'address: required' });
  });
});

describe('the SMTP door with suppression.mode flag', () => {
  it('takes the recipient and notes it on the QUEUED event', async () => {
    const raw = Buffer.from('From: plain@campus.example\r\nTo: gone@students.example\r\nSubject: Notice\r\n\r\nhello\r\n');
    const got = await submit({
      port: smtpPort,
      security: 'starttls',
      auth: { user: 'flagger', pass: 'flagger-password-0123456789' },
      envelope: { from: 'plain@campus.example', to: ['gone@students.example'] },
      raw,
    });
    expect(got.ok && got.rejected).toEqual([]);
    const id = got.ok ? /OK (\S+) queued/.exec(got.response)?.[1] : undefined;
    expect(await queuedDetail(id!)).toBe(`accepted; suppressed recipient <gone@students.example> hard-bounced at ${when} (5.1.1: 550 5.1.1 User unknown)`);
  });
});
