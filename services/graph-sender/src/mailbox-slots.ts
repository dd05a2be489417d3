import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { notStarted, retryable } from '@relay/core';

export interface SlotTiming {
  leaseMs: number;
  pollMs: number;
  waitTimeoutMs: number;
}

export const SLOT_DEFAULTS: SlotTiming = {
  /** A slot not renewed for this long is free again (a replica that died holding it). */
  leaseMs: 30_000,
  /** How often a waiting request looks for a free slot (plus up to as much again, at random). */
  pollMs: 20,
  /** A request that waited this long for a slot gives up; its message is retried later. */
  waitTimeoutMs: 300_000,
};

export interface MailboxSlots {
  /**
   * Waits for one of `limit` request slots of `mailbox`, shared by all graph-sender replicas
   * through Redis; resolves with the function that gives it back. Once `stopping` is aborted a
   * wait that has not got its slot ends with a `notStarted` error.
   */
  acquire(mailbox: string, limit: number, stopping?: AbortSignal): Promise<() => Promise<void>>;
}

// A sorted set per mailbox: member = slot holder, score = lease end on Redis' clock. Expired
// leases are swept before counting, so a crashed replica's slots come back after leaseMs.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0`;

const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return n`;

/**
 * Per-mailbox concurrency across replicas (Graph allows 4 concurrent requests per mailbox): a
 * lease-based counting semaphore in Redis. Holders renew their lease while a request runs.
 * Redis holds nothing durable here: losing it frees every slot, never loses mail; while it is
 * unreachable requests wait (and their messages retry later) rather than go out unbounded.
 */
export function createMailboxSlots(redis: Redis, prefix: string, timing: Partial<SlotTiming> = {}): MailboxSlots {
  const t = { ...SLOT_DEFAULTS, ...timing };
  const key = (mailbox: string) => `${prefix}:graph-slots:${mailbox.toLowerCase()}`;
  return {
    async acquire(mailbox, limit, stopping) {
      const k = key(mailbox);
      const holder = randomBytes(12).toString('base64url');
      const deadline = Date.now() + t.waitTimeoutMs;
      let lastError: unknown;
      for (;;) {
        try {
          if ((await redis.eval(ACQUIRE, 1, k, limit, t.leaseMs, holder)) === 1) break;
          lastError = undefined;
        } catch (err) {
          lastError = err;
        }
        if (stopping?.aborted) throw notStarted(`the service is stopping; no Graph request slot for mailbox ${mailbox} was free yet`);
        if (Date.now() > deadline) {
          throw retryable(
            lastError
              ? `cannot take a Graph request slot for mailbox ${mailbox}: Redis: ${(lastError as Error).message}`
              : `mailbox ${mailbox} had no free Graph request slot (limit ${limit}) for ${Math.round(t.waitTimeoutMs / 1000)} s`,
            { cause: lastError },
          );
        }
        await new Promise((r) => setTimeout(r, t.pollMs + Math.random() * t.pollMs));
      }
      const renew = setInterval(() => {
        redis.eval(RENEW, 1, k, t.leaseMs, holder).catch(() => {});
      }, t.leaseMs / 3);
      renew.unref();
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        clearInterval(renew);
        await redis.zrem(k, holder).catch(() => {
          // The lease runs out by itself.
        });
      };
    },
  };
}
