import { writeFileSync } from 'node:fs';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { connectBus, decodeEnvelope, type Bus } from '@relay/bus';
import { EnvelopeSchema } from '@relay/proto';
import {
  dropBus,
  eventually,
  type PrivateRedis,
  type ServiceProcess,
  spawnService,
  startPrivateRedis,
  testNatsUrl,
  uniquePrefix,
  writeConfig,
} from '@relay/testkit';
import type { Subscription } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Pacing end to end: two scheduler processes share every sender's limits through Redis. Mail is
 * published straight onto the submitted subjects; what the schedulers release is seen on the
 * dispatch subjects, with the time it was released.
 */
const prefix = uniquePrefix('pacing');
/** Time between a grant and its dispatch being seen here (publish, delivery to this subscriber). */
const SLACK_MS = 250;

const senders: Array<{ id: string; rate?: Record<string, unknown>; user?: string }> = [
  { id: 'paced', rate: { batch_size: 5, interval: '2s' } },
  { id: 'slow', rate: { batch_size: 1, interval: '10s' } },
  { id: 'free' },
  { id: 'daily', rate: { daily_recipients: 3, daily_window: '4s' } },
  { id: 'restart', rate: { batch_size: 3, interval: '2s' } },
  { id: 'reload', rate: { batch_size: 1, interval: '30s' } },
  // Two addresses of one signed-in mailbox: the provider's limit is the mailbox's, so they share it.
  { id: 'shared-a', rate: { batch_size: 3, interval: '2s' }, user: 'relay@campus.example' },
  { id: 'shared-b', rate: { batch_size: 3, interval: '2s' }, user: 'Relay@campus.example' },
];
const config = (rates: Record<string, unknown> = {}) => ({
  clients: [{ name: 'app', api_key: 'pacing-key-0123456789abcdef0123456789', senders: senders.map((s) => s.id) }],
  senders: senders.map((s) => ({
    id: s.id,
    from: `${s.id}@campus.example`,
    transport: 'smtp',
    smtp: { host: '127.0.0.1', port: 2587, security: 'none', ...(s.user ? { auth: { type: 'password', user: s.user, password: 'unused' } } : {}) },
    ...(rates[s.id] ? { rate: rates[s.id] } : s.rate ? { rate: s.rate } : {}),
  })),
});

let redis: PrivateRedis;
let bus: Bus;
let schedulers: ServiceProcess[] = [];
let configPath: string;
let sub: Subscription;
const released = new Map<string, number>(); // message id → first time seen on dispatch
let n = 0;

beforeAll(async () => {
  redis = await startPrivateRedis();
  configPath = writeConfig(config());
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'pacing-test' });
  sub = bus.nc.subscribe(`${prefix}.dispatch.>`);
  void (async () => {
    for await (const m of sub) {
      const id = decodeEnvelope(m.data).messageId;
      if (!released.has(id)) released.set(id, Date.now());
    }
  })();
  const env = {
    RELAY_CONFIG: configPath,
    NATS_URL: testNatsUrl(),
    REDIS_URL: redis.url,
    RELAY_BUS_PREFIX: prefix,
    RELAY_HOST: '127.0.0.1',
    RELAY_METRICS_PORT: '0',
    RELAY_ACK_WAIT: '10s',
  };
  schedulers = await Promise.all([1, 2].map(() => spawnService('scheduler', { env })));
}, 60_000);

afterAll(async () => {
  const exits = await Promise.all(schedulers.map((s) => s.stop()));
  sub?.unsubscribe();
  await bus?.close();
  await redis?.close();
  await dropBus(prefix);
  expect(exits.map((e) => e.code)).toEqual(schedulers.map(() => 0));
});

async function submit(sender: string, count: number, extra: { sendAt?: Date; recipients?: number } = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `${sender}-${++n}`;
    ids.push(id);
    const env = create(EnvelopeSchema, {
      messageId: id,
      sender,
      to: ['a@campus.example'],
      subject: id,
      attempt: 1,
      recipientCount: extra.recipients ?? 1,
      submittedAt: timestampFromDate(new Date()),
      ...(extra.sendAt ? { sendAt: timestampFromDate(extra.sendAt) } : {}),
    });
    await bus.publishEnvelope(bus.names.submittedSubject(sender), env, `${id}.submit`);
  }
  return ids;
}

async function waitReleased(ids: string[], timeoutMs: number): Promise<number[]> {
  const end = Date.now() + timeoutMs;
  while (ids.some((id) => !released.has(id))) {
    if (Date.now() > end) {
      const logs = schedulers.map((s, i) => `scheduler ${i}:\n${s.logs.slice(-15).join('\n')}`).join('\n');
      throw new Error(`${ids.filter((id) => released.has(id)).length} of ${ids.length} released after ${timeoutMs} ms\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return ids.map((id) => released.get(id)!).sort((a, b) => a - b);
}

async function waitAnyReleased(ids: string[], timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ids.some((id) => released.has(id))) {
    if (Date.now() > end) throw new Error(`none of ${ids.length} released after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The most releases seen in any window of `windowMs` (shortened by the observation slack). */
function maxInWindow(times: number[], windowMs: number): number {
  let best = 0;
  for (let i = 0; i < times.length; i++) {
    let j = i;
    while (j < times.length && times[j]! - times[i]! < windowMs - SLACK_MS) j++;
    best = Math.max(best, j - i);
  }
  return best;
}

async function metrics(s: ServiceProcess): Promise<string> {
  return (await fetch(`http://127.0.0.1:${s.ports.metrics}/metrics`)).text();
}

/** Resolves once the schedulers hold `n` of the sender's messages back (its lane's backlog): taken in, not released. */
async function heldBack(sender: string, n: number): Promise<void> {
  const re = new RegExp(`relay_scheduler_backlog_messages\\{sender="${sender}"\\} (\\d+)`);
  const backlog = async () => Math.max(0, ...(await Promise.all(schedulers.map(metrics))).map((t) => Number(re.exec(t)?.[1] ?? 0)));
  await eventually(async () => ((await backlog()) === n ? true : undefined), 10_000);
}

describe('pacing across two scheduler processes', () => {
  it('never releases more than batch_size per interval, and releases the whole backlog', async () => {
    const ids = await submit('paced', 20);
    const times = await waitReleased(ids, 20_000);
    expect(maxInWindow(times, 2_000)).toBeLessThanOrEqual(5);
    // 20 messages at 5 per 2 s need at least three full intervals after the first batch.
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(3 * 2_000 - SLACK_MS);
    // Every release was a grant of the shared pacer (counted across both replicas).
    const granted = await Promise.all(
      schedulers.map(async (s) => Number(/relay_pacing_granted_total\{sender="paced"\} (\d+)/.exec(await metrics(s))?.[1] ?? 0)),
    );
    expect(granted.reduce((a, b) => a + b, 0)).toBe(20);
  }, 30_000);

  it('paces senders that sign in as the same mailbox together', async () => {
    const ids = [...(await submit('shared-a', 6)), ...(await submit('shared-b', 6))];
    const times = await waitReleased(ids, 30_000);
    // One bound of 3 per 2 s for both, not 3 each.
    expect(maxInWindow(times, 2_000)).toBeLessThanOrEqual(3);
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(3 * 2_000 - SLACK_MS);
  }, 40_000);

  it("lets another sender's mail through at once while one sender has a backlog", async () => {
    await submit('slow', 10);
    await heldBack('slow', 9);
    const t0 = Date.now();
    const [free] = await submit('free', 1);
    const [at] = await waitReleased([free!], 5_000);
    // Not behind slow's backlog (one per 10 s); the bound leaves room for a loaded machine.
    expect(at! - t0).toBeLessThan(3_000);
    const m = await Promise.all(schedulers.map(metrics));
    const waiting = m.map((t) => Number(/relay_pacing_waiting_messages\{sender="slow"\} (\d+)/.exec(t)?.[1] ?? 0));
    expect(waiting.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(m.join()).toMatch(/relay_scheduler_backlog_messages\{sender="slow"\} [1-9]/);
  });

  it('defers messages over the daily recipient cap, then releases them as the window frees room', async () => {
    const t0 = Date.now();
    const ids = await submit('daily', 5);
    // Three go at once; the other two wait for the rolling window (4 s) to let the first ones out.
    const end = Date.now() + 3_000;
    while (ids.filter((id) => released.has(id)).length < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    await heldBack('daily', 2);
    const first = ids.filter((id) => released.has(id));
    expect(first).toHaveLength(3);
    expect(first.every((id) => released.get(id)! - t0 < 3_000)).toBe(true);
    const remaining = (await Promise.all(schedulers.map(metrics))).map((t) => /relay_pacing_daily_recipients_remaining\{sender="daily"\} (\d+)/.exec(t)?.[1]);
    expect(remaining).toContain('0');
    expect(schedulers.some((s) => s.logs.some((l) => l.includes('reached its daily cap')))).toBe(true);
    const all = await waitReleased(ids, 10_000);
    expect(all.at(-1)! - t0).toBeGreaterThanOrEqual(4_000 - SLACK_MS);
  }, 20_000);

  it('does not send before send_at', async () => {
    const at = new Date(Date.now() + 3_000);
    const [id] = await submit('free', 1, { sendAt: at });
    const [t] = await waitReleased([id!], 10_000);
    expect(t!).toBeGreaterThanOrEqual(at.getTime() - 50);
  });

  it('keeps the bound and loses nothing when Redis restarts empty mid-run', async () => {
    const ids = await submit('restart', 15);
    await new Promise((r) => setTimeout(r, 2_500));
    await redis.kill();
    // A grant given just before the kill may still be on its way to the dispatch subject.
    await new Promise((r) => setTimeout(r, 300));
    const whileDown = ids.filter((id) => released.has(id)).length;
    expect(whileDown).toBeGreaterThan(0);
    expect(whileDown).toBeLessThan(ids.length);
    // Nothing is released without Redis, over more than a whole interval (2 s).
    await new Promise((r) => setTimeout(r, 2_500));
    expect(ids.filter((id) => released.has(id)).length).toBe(whileDown);
    await redis.restart();
    const times = await waitReleased(ids, 30_000);
    expect(maxInWindow(times, 2_000)).toBeLessThanOrEqual(3);
    expect(schedulers.some((s) => s.logs.some((l) => l.includes('pacing state rebuilt')))).toBe(true);
  }, 45_000);

  it('applies a changed rate without a restart', async () => {
    const ids = await submit('reload', 4);
    // Either replica may win the one slot, with whichever of the four it holds.
    await waitAnyReleased(ids, 15_000);
    await heldBack('reload', 3);
    expect(ids.filter((id) => released.has(id))).toHaveLength(1);
    writeFileSync(configPath, JSON.stringify(config({ reload: { batch_size: 10, interval: '1s' } })));
    await Promise.all(schedulers.map((s) => s.waitForLog(/configuration reloaded/, 10_000)));
    // The waiting messages notice the new rate at their next look (at most 2 s later; the limit
    // here only leaves room for a loaded machine: under the old rate they would need minutes).
    await waitReleased(ids, 15_000);
  }, 45_000);
});
