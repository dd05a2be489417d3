import { Redis } from 'ioredis';
import { eventually, testRedisUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createMailboxSlots } from './mailbox-slots.js';

let a: Redis;
let b: Redis;
const prefix = uniquePrefix('slots');

/** Resolves once `redis` has been asked `n` times to take a slot: a waiter that was refused n - 1 times. */
async function asked(redis: Redis, n: number): Promise<void> {
  const calls = vi.spyOn(redis, 'eval');
  await eventually(() => (calls.mock.calls.length >= n ? true : undefined), 5_000);
  calls.mockRestore();
}

beforeAll(() => {
  a = new Redis(testRedisUrl());
  b = new Redis(testRedisUrl());
});
afterAll(async () => {
  const keys = await a.keys(`${prefix}:*`);
  if (keys.length) await a.del(...keys);
  await Promise.all([a.quit(), b.quit()]);
});

describe('mailbox slots', () => {
  it('holds requests of two replicas to the mailbox limit and lets a waiter in when a slot is given back', async () => {
    // Two slot sets on two connections stand for two graph-sender replicas.
    const one = createMailboxSlots(a, prefix, { pollMs: 5 });
    const two = createMailboxSlots(b, prefix, { pollMs: 5 });
    const held = await Promise.all([one.acquire('Box@campus.example', 3), two.acquire('box@campus.example', 3), one.acquire('box@campus.example', 3)]);
    expect(await a.zcard(`${prefix}:graph-slots:box@campus.example`)).toBe(3);
    let fourth = false;
    const waiter = new Redis(testRedisUrl());
    const polled = asked(waiter, 4);
    const waiting = createMailboxSlots(waiter, prefix, { pollMs: 5 })
      .acquire('box@campus.example', 3)
      .then((release) => {
        fourth = true;
        return release;
      });
    // The waiter asks several times and stays out while three slots are held.
    await polled;
    expect(fourth).toBe(false);
    await held[1]!();
    const release4 = await waiting;
    expect(await a.zcard(`${prefix}:graph-slots:box@campus.example`)).toBe(3);
    await Promise.all([held[0]!(), held[2]!(), release4()]);
    expect(await a.zcard(`${prefix}:graph-slots:box@campus.example`)).toBe(0);
    await waiter.quit();
  });

  it('frees the slot of a replica that died holding it once its lease runs out', async () => {
    const dying = new Redis(testRedisUrl());
    const crashed = createMailboxSlots(dying, prefix, { leaseMs: 150, pollMs: 5 });
    await crashed.acquire('gone@campus.example', 1); // never released
    // The replica is gone: its connection drops and its lease is no longer renewed.
    dying.disconnect();
    expect(await a.zcard(`${prefix}:graph-slots:gone@campus.example`)).toBe(1);
    const other = createMailboxSlots(b, prefix, { leaseMs: 150, pollMs: 5 });
    const t0 = Date.now();
    const release = await other.acquire('gone@campus.example', 1);
    // It had to wait for the dead holder's lease (150 ms from its acquisition) to run out.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50);
    expect(await a.zcard(`${prefix}:graph-slots:gone@campus.example`)).toBe(1);
    await release();
    expect(await a.zcard(`${prefix}:graph-slots:gone@campus.example`)).toBe(0);
  });

  it('ends a wait with a not-started error once the service stops, taking no slot', async () => {
    const s = createMailboxSlots(a, prefix, { pollMs: 5 });
    const held = await s.acquire('full@campus.example', 1);
    const stopping = new AbortController();
    const polled = asked(a, 2);
    const waiting = s.acquire('full@campus.example', 1, stopping.signal);
    // Refused once, and waiting.
    await polled;
    stopping.abort();
    await expect(waiting).rejects.toMatchObject({ notStarted: true, message: expect.stringMatching(/stopping.*full@campus\.example/) });
    expect(await a.zcard(`${prefix}:graph-slots:full@campus.example`)).toBe(1);
    await held();
    // Only waiting ends: with a slot free the request goes ahead even during a stop.
    const release = await s.acquire('full@campus.example', 1, stopping.signal);
    expect(await a.zcard(`${prefix}:graph-slots:full@campus.example`)).toBe(1);
    await release();
  });

  it('gives up after the wait timeout with a retryable error naming the mailbox', async () => {
    const s = createMailboxSlots(a, prefix, { pollMs: 5, waitTimeoutMs: 30 });
    const held = await s.acquire('busy@campus.example', 1);
    await expect(s.acquire('busy@campus.example', 1)).rejects.toMatchObject({
      retryable: true,
      message: expect.stringMatching(/busy@campus\.example had no free Graph request slot/),
    });
    await held();
  });
});
