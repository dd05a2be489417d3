import { timestampDate } from '@bufbuild/protobuf/wkt';
import { MessageState, type SenderQueueStats } from '@relay/proto';
import {
  clientEntry,
  codeOf,
  eventually,
  newClient,
  smtpSender,
  type Stack,
  startSmtpServer,
  startStack,
  status,
  type TestClient,
  type TestSmtpServer,
  testRedisUrl,
  waitForState,
} from '@relay/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * GetQueueStats against the whole relay: a sender paced to one message an hour with mail held
 * behind its first, one whose server refuses mail for good, one whose server answers "try later"
 * (its retry parked for an hour), and one with nothing to do.
 */
const HOUR = 3_600_000;
let server: TestSmtpServer;
let stack: Stack;
let app: TestClient;
let ops: TestClient;
const appKey = newClient('app', ['paced', 'broken', 'flaky', 'idle']);
const opsKey = newClient('ops', [], true);

beforeAll(async () => {
  server = await startSmtpServer({
    security: 'starttls',
    reply: (ctx) => {
      if (ctx.phase !== 'data') return undefined;
      if (ctx.from.startsWith('broken@')) return { code: 550, message: '5.7.1 relaying denied' };
      if (ctx.from.startsWith('flaky@')) return { code: 451, message: '4.3.0 try again later' };
      return undefined;
    },
  });
  stack = await startStack({
    label: 'queue-stats',
    config: {
      clients: [clientEntry(appKey), clientEntry(opsKey)],
      senders: [
        { ...smtpSender({ id: 'paced', server }), rate: { batch_size: 1, interval: '1h', daily_recipients: 100 } },
        smtpSender({ id: 'broken', server }),
        smtpSender({ id: 'flaky', server }),
        smtpSender({ id: 'idle', server }),
      ],
      // A retry waits an hour: the flaky sender's message stays RETRYING while the test looks.
      delivery: { retry_initial: '1h', retry_max: '1h', max_age: '24h' },
    },
  });
  app = stack.client(appKey.apiKey);
  ops = stack.client(opsKey.apiKey);
});

afterAll(async () => {
  await stack?.stop();
  await server?.close();
});

const send = (sender: string, to: string[]) => app.sendMail({ sender, to, subject: `to ${sender}`, text: 'x' });
const of = (all: SenderQueueStats[], id: string) => all.find((s) => s.sender === id)!;

describe('GetQueueStats', () => {
  let firstSentAt = 0;
  let heldSince = 0;

  it('counts per sender what is held by its pace, retrying and failed, with its daily cap and next release', async () => {
    const t0 = Date.now();
    const first = await send('paced', ['a@students.campus.example', 'b@students.campus.example']);
    await waitForState(app, first.messageId, [MessageState.SENT]);
    firstSentAt = Date.now();
    heldSince = Date.now();
    await send('paced', ['c@students.campus.example']);
    await send('paced', ['d@students.campus.example']);
    const broken = await send('broken', ['e@students.campus.example']);
    const flaky = await send('flaky', ['f@students.campus.example']);
    await waitForState(app, broken.messageId, [MessageState.FAILED]);
    await waitForState(app, flaky.messageId, [MessageState.RETRYING]);
    // The index follows the status stream a moment behind; the held mail is in the held stream.
    const all = await eventually(async () => {
      const r = await ops.getQueueStats({});
      const [p, b, f] = ['paced', 'broken', 'flaky'].map((id) => of(r.senders, id));
      return p?.held === 2n && b?.failed24h === 1n && f?.retrying === 1n ? r.senders : undefined;
    });
    expect(all.map((s) => s.sender).sort()).toEqual(['broken', 'flaky', 'idle', 'paced']);

    const paced = of(all, 'paced');
    expect(paced).toMatchObject({ queued: 2n, held: 2n, retrying: 0n, sending: 0n, failed24h: 0n, recipientsToday: 2n, dailyRecipientCap: 100n });
    // The next slot opens an hour after the first message's grant.
    const next = timestampDate(paced.nextReleaseAt!).getTime();
    expect(next).toBeGreaterThanOrEqual(t0 + HOUR - 1_000);
    expect(next).toBeLessThanOrEqual(firstSentAt + HOUR + 1_000);
    expect(Number(paced.oldestAgeSeconds)).toBeLessThanOrEqual(Math.ceil((Date.now() - heldSince) / 1000) + 1);

    expect(of(all, 'broken')).toMatchObject({ queued: 0n, held: 0n, retrying: 0n, failed24h: 1n, recipientsToday: 0n, dailyRecipientCap: 0n });
    expect(of(all, 'broken').nextReleaseAt).toBeUndefined();
    // The parked retry sits in the held stream, and counts as retrying, not held.
    expect(of(all, 'flaky')).toMatchObject({ queued: 0n, held: 0n, retrying: 1n, failed24h: 0n });
    expect(Number(of(all, 'flaky').oldestAgeSeconds)).toBeGreaterThanOrEqual(0);
    expect(of(all, 'idle')).toMatchObject({ queued: 0n, held: 0n, retrying: 0n, sending: 0n, failed24h: 0n, oldestAgeSeconds: 0n });
  });

  it('gives the age of the oldest message not yet sent', async () => {
    await new Promise((r) => setTimeout(r, 2_100));
    const [paced] = (await ops.getQueueStats({ sender: 'paced' })).senders;
    const age = Number(paced!.oldestAgeSeconds);
    expect(age).toBeGreaterThanOrEqual(2);
    expect(age).toBeLessThanOrEqual(Math.ceil((Date.now() - heldSince) / 1000) + 1);
  });

  it('answers for one sender, NOT_FOUND for an unknown one, PERMISSION_DENIED for a non-admin key', async () => {
    const one = await ops.getQueueStats({ sender: 'broken' });
    expect(one.senders.map((s) => s.sender)).toEqual(['broken']);
    expect(await codeOf(ops.getQueueStats({ sender: 'nobody' }))).toMatchObject({ code: status.NOT_FOUND, details: expect.stringContaining('nobody') });
    expect((await codeOf(app.getQueueStats({}))).code).toBe(status.PERMISSION_DENIED);
  });

  it('reads the pacing log when Redis has lost the pacing state', async () => {
    const before = of((await ops.getQueueStats({ sender: 'paced' })).senders, 'paced');
    // The scheduler would rebuild Redis' state at its next look: stopped, the figures can only come from the log.
    await stack.scheduler.stop('SIGTERM', 20_000);
    const redis = new Redis(testRedisUrl());
    try {
      const keys = await redis.keys(`${stack.prefix}:pace:{paced}:*`);
      expect(keys.length).toBeGreaterThan(0);
      await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
    const after = of((await ops.getQueueStats({ sender: 'paced' })).senders, 'paced');
    expect(after.recipientsToday).toBe(2n);
    // The log keeps the grant's time on Redis' clock, as Redis did.
    expect(timestampDate(after.nextReleaseAt!).getTime()).toBe(timestampDate(before.nextReleaseAt!).getTime());
  });
});
