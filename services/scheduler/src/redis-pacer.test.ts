import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { parseConfig } from '@relay/config';
import { EnvelopeSchema } from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { testRedisUrl } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant, PacingLog } from '@relay/bus';
import { RedisPacer } from './redis-pacer.js';

/** The Redis pacer against the real Redis, with the durable pacing log kept in memory. */
describe('RedisPacer', () => {
  let redis: Redis;
  const logged: Array<Grant & { key: string }> = [];
  const log = {
    append: (key: string, g: Grant) => void logged.push({ ...g, key }),
    read: async (key: string, since: number) => logged.filter((g) => g.key === key && g.t >= since),
  } as unknown as PacingLog;
  const prefix = `pacer-${randomBytes(4).toString('hex')}`;
  const pacer = () => new RedisPacer(redis, log, prefix, createLogger({ service: 'test', level: 'silent' }));
  const sender = (id: string, rate: string) =>
    parseConfig(
      `clients: [{ name: app, api_key: test-key-0123456789abcdef0123456789, senders: [${id}] }]\nsenders:\n  - { id: ${id}, from: ${id}@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2587, security: none }, rate: ${rate} }\n`,
      {},
    ).senders[0]!;
  const env = (id: string, recipients = 1) =>
    create(EnvelopeSchema, { messageId: id, sender: 's', to: ['a@campus.example'], attempt: 1, recipientCount: recipients });

  beforeAll(async () => {
    redis = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('counts a message that asks again after its grant once, against the day and the window', async () => {
    const p = pacer();
    const s = sender('daily', '{ daily_messages: 2, daily_recipients: 10, batch_size: 2, interval: 60s }');
    const signal = new AbortController().signal;
    await p.acquire(
      () => s,
      env('a', 3),
      signal,
      () => {},
    ); // builds the state, then grants
    expect(await p.tryAcquire(s, env('a', 3))).toBe(true); // the same message again
    expect(await p.recipientsToday(s.pacingKey)).toBe(3);
    expect(await p.tryAcquire(s, env('b', 2))).toBe(true);
    expect(await p.recipientsToday(s.pacingKey)).toBe(5);
    // Two messages in the window and two today: a third waits.
    expect(await p.tryAcquire(s, env('c'))).toBe(false);
    expect(await p.tryAcquire(s, env('b', 2))).toBe(true);

    // Rebuilt from the log after Redis lost the state: "a" was logged twice, counted once.
    expect(logged.filter((g) => g.m === 'a:1')).toHaveLength(2);
    await redis.del(...Object.values(p.keys(s.pacingKey)));
    await p.acquire(
      () => s,
      env('b', 2),
      signal,
      () => {},
    );
    expect(await p.recipientsToday(s.pacingKey)).toBe(5);
    expect(await p.tryAcquire(s, env('c'))).toBe(false);
  });
});
