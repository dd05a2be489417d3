import { parseConfig, type ClientConfig } from '@relay/config';
import { isRelayError } from '@relay/core';
import { createLogger } from '@relay/telemetry';
import { testRedisUrl, uniquePrefix } from '@relay/testkit';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createClientBudget, type BudgetCharge } from './client-budget.js';

const redis = new Redis(testRedisUrl());
const prefix = uniquePrefix('budget');
const logger = createLogger({ service: 'test', level: 'silent' });
const MAX_AGE_MS = 60_000;

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

function client(limits: string): ClientConfig {
  const cfg = parseConfig(
    `clients: [{ name: app, api_key: test-key-0123456789abcdef0123456789, senders: [s], limits: ${limits} }]\nsenders:\n  - { id: s, from: s@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }\n`,
    {},
  );
  return { ...cfg.clients[0]!, name: uniquePrefix('client') };
}

let seq = 0;
const msg = (over: Partial<BudgetCharge> = {}): BudgetCharge => ({ messageId: `m-${++seq}`, sizeBytes: 100, recipients: 1, ...over });

async function outcome(p: Promise<void>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (isRelayError(err)) return err.message.replace(/^client "[^"]+": limits\.([a-z_]+).*$/, '$1');
    throw err;
  }
}

describe('client budget', () => {
  it('refills messages_per_second over time', async () => {
    let now = 1_000_000;
    const budget = createClientBudget(redis, prefix, logger, MAX_AGE_MS, () => now);
    const c = client('{ messages_per_second: 2 }');
    expect([await outcome(budget.charge(c, msg())), await outcome(budget.charge(c, msg())), await outcome(budget.charge(c, msg()))]).toEqual([
      'ok',
      'ok',
      'messages_per_second',
    ]);
    now += 500;
    expect(await outcome(budget.charge(c, msg()))).toBe('ok');
    expect(await outcome(budget.charge(c, msg()))).toBe('messages_per_second');
  });

  it('charges a message once: a retry with the same idempotency key (same id) takes no second share of a rate', async () => {
    const now = 2_000_000;
    const budget = createClientBudget(redis, prefix, logger, MAX_AGE_MS, () => now);
    const c = client('{ messages_per_second: 1, daily_recipients: 5 }');
    const first = msg({ recipients: 5 });
    expect(await outcome(budget.charge(c, first))).toBe('ok');
    expect(await outcome(budget.charge(c, first))).toBe('ok');
    expect(await outcome(budget.charge(c, first))).toBe('ok');
    expect(await outcome(budget.charge(c, msg({ recipients: 1 })))).toBe('messages_per_second');
  });

  it('lets a message larger than bytes_per_second through on a full bucket and then waits off the debt', async () => {
    let now = 2_000_000;
    const budget = createClientBudget(redis, prefix, logger, MAX_AGE_MS, () => now);
    const c = client('{ bytes_per_second: 1000 }');
    expect(await outcome(budget.charge(c, msg({ sizeBytes: 3000 })))).toBe('ok');
    now += 1_500;
    expect(await outcome(budget.charge(c, msg({ sizeBytes: 100 })))).toBe('bytes_per_second');
    now += 1_000;
    expect(await outcome(budget.charge(c, msg({ sizeBytes: 100 })))).toBe('ok');
  });

  it('holds stored quota until release, once per message, and drops messages past their deadline', async () => {
    let now = 3_000_000;
    const budget = createClientBudget(redis, prefix, logger, MAX_AGE_MS, () => now);
    const c = client('{ max_stored_messages: 2 }');
    const a = msg();
    await budget.charge(c, a);
    await budget.charge(c, msg());
    expect(await outcome(budget.charge(c, msg()))).toBe('max_stored_messages');
    // The same message charged again (a retry after a crash) does not count twice.
    await budget.charge(c, a);
    await budget.release(a.messageId);
    await budget.release(a.messageId);
    expect(await outcome(budget.charge(c, msg()))).toBe('ok');
    expect(await outcome(budget.charge(c, msg()))).toBe('max_stored_messages');
    // A release that never came: the message stops counting after its delivery deadline.
    now += MAX_AGE_MS + 3_600_000 + 1;
    expect(await outcome(budget.charge(c, msg()))).toBe('ok');
  });

  it('counts the first messages of a client whose limits arrive while ingest still connects to Redis', async () => {
    // As ingest makes it: lazily connected, no offline queue (a command before "ready" fails).
    const fresh = new Redis(testRedisUrl(), { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    const connected = fresh.connect();
    const budget = createClientBudget(fresh, prefix, logger, MAX_AGE_MS, Date.now, connected);
    const c = client('{ daily_recipients: 1 }');
    expect(await outcome(budget.charge(c, msg()))).toBe('ok');
    expect(await outcome(budget.charge(c, msg()))).toBe('daily_recipients');
    fresh.disconnect();
  });

  it('admits without limits and while Redis does not answer', async () => {
    const down = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    const budget = createClientBudget(down, prefix, logger, MAX_AGE_MS);
    expect(await outcome(budget.charge(client('{ max_stored_messages: 1 }'), msg()))).toBe('ok');
    expect(await outcome(createClientBudget(redis, prefix, logger, MAX_AGE_MS).charge(client('{}'), msg()))).toBe('ok');
    down.disconnect();
  });
});
