import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { RateConfig, SenderConfig } from '@relay/config';
import { pacingRedisKeys, type Grant, type PacingLog } from '@relay/bus';
import { describe } from '@relay/core';
import type { Envelope } from '@relay/proto';
import type { Logger } from '@relay/telemetry';
import type { Pacer } from './pacer.js';
import { ACQUIRE_SCRIPT } from './pacing-script.js';

/** Longest single sleep before asking Redis again (a freed slot may be taken by a replica). */
const MAX_POLL_MS = 2_000;
const REDIS_RETRY_MS = 1_000;
const REBUILD_LOCK_MS = 30_000;

/** What an operator sees of one sender's pacing (metrics, logs). */
export interface PacingState {
  /** Messages of this replica waiting for a slot right now. */
  waiting: number;
  /** When the next slot opens (ms since epoch), when the sender is waiting. */
  nextSlotAt: number | undefined;
  /** Why it waits: "interval" or "daily". */
  reason: string | undefined;
  granted: number;
}

type AcquireFn = (...args: Array<string | number>) => Promise<[number, string, number]>;

export function isPaced(rate: RateConfig | undefined): rate is RateConfig {
  return !!rate && ((!!rate.batchSize && !!rate.intervalMs) || !!rate.dailyRecipients || !!rate.dailyMessages);
}

/**
 * Pacing shared by every scheduler replica: one atomic Redis script per message decides, so the
 * observed rate is the same whatever the number of replicas. Each grant is also written to the
 * durable pacing log; when Redis has lost its state (restart, eviction) no grant is given until
 * the state has been rebuilt from that log, so a Redis restart never lets a burst through.
 * While Redis is unreachable the pacer holds: it never sends without a grant.
 */
export class RedisPacer implements Pacer {
  readonly #redis: Redis;
  readonly #log: PacingLog;
  readonly #prefix: string;
  readonly #logger: Logger;
  readonly #acquire: AcquireFn;
  readonly #state = new Map<string, PacingState>();
  #redisDown = false;

  constructor(redis: Redis, log: PacingLog, prefix: string, logger: Logger) {
    this.#redis = redis;
    this.#log = log;
    this.#prefix = prefix;
    this.#logger = logger;
    redis.defineCommand('relayPaceAcquire', { numberOfKeys: 4, lua: ACQUIRE_SCRIPT });
    this.#acquire = (redis as unknown as Record<string, AcquireFn>).relayPaceAcquire!.bind(redis);
  }

  /** Redis keys of one pacing key (a sender id, or the mailbox several senders share). */
  keys(pacingKey: string) {
    return pacingRedisKeys(this.#prefix, pacingKey);
  }

  state(sender: string): PacingState {
    let s = this.#state.get(sender);
    if (!s) this.#state.set(sender, (s = { waiting: 0, nextSlotAt: undefined, reason: undefined, granted: 0 }));
    return s;
  }

  /** Recipients counted against the daily cap right now (for metrics), or undefined without Redis. */
  async recipientsToday(pacingKey: string): Promise<number | undefined> {
    const v = await this.#redis.hget(this.keys(pacingKey).totals, 'rcpt').catch(() => null);
    return v === null ? (this.#redisDown ? undefined : 0) : Number(v);
  }

  async tryAcquire(sender: SenderConfig, env: Envelope): Promise<boolean> {
    const rate = sender.rate;
    if (!isPaced(rate)) return true;
    try {
      const [wait, , now] = await this.#ask(sender, rate, env);
      this.#redisUp();
      if (wait !== 0) return false;
      this.#granted(sender, env, now);
      return true;
    } catch (err) {
      this.#redisFailed(err);
      return false;
    }
  }

  async acquire(current: () => SenderConfig, env: Envelope, signal: AbortSignal, keepAlive: () => void): Promise<void> {
    const sender = current();
    if (!isPaced(sender.rate)) return;
    const st = this.state(sender.id);
    st.waiting++;
    try {
      for (;;) {
        signal.throwIfAborted();
        const rate = current().rate;
        if (!isPaced(rate)) return;
        let wait: number, reason: string, now: number;
        try {
          [wait, reason, now] = await this.#ask(sender, rate, env);
          this.#redisUp();
        } catch (err) {
          this.#redisFailed(err);
          await sleep(REDIS_RETRY_MS, undefined, { signal });
          keepAlive();
          continue;
        }
        if (wait === 0) {
          this.#granted(sender, env, now);
          return;
        }
        if (wait < 0) {
          await this.#rebuild(sender.pacingKey, rate);
          continue;
        }
        if (reason === 'daily' && st.reason !== 'daily') {
          this.#logger.warn(
            { sender: sender.id, daily_recipients: rate.dailyRecipients, daily_messages: rate.dailyMessages, next_slot_at: new Date(now + wait).toISOString() },
            'sender reached its daily cap; its mail waits (QUEUED) until the rolling window frees room',
          );
        }
        st.reason = reason;
        st.nextSlotAt = now + wait;
        // A little jitter so replicas waiting for the same slot do not ask at the same instant.
        await sleep(Math.min(wait, MAX_POLL_MS) + Math.random() * 20, undefined, { signal });
        keepAlive();
      }
    } finally {
      st.waiting--;
    }
  }

  /** One atomic look at the sender's pacing key: [waitMs (0 granted, -1 rebuild), reason, now]. */
  #ask(sender: SenderConfig, rate: RateConfig, env: Envelope) {
    const k = this.keys(sender.pacingKey);
    return this.#acquire(
      k.win,
      k.day,
      k.totals,
      k.epoch,
      rate.intervalMs ?? 0,
      rate.batchSize ?? 0,
      rate.dailyWindowMs,
      rate.dailyRecipients ?? 0,
      rate.dailyMessages ?? 0,
      `${env.messageId}:${env.attempt}`,
      Math.max(1, env.recipientCount),
    );
  }

  #granted(sender: SenderConfig, env: Envelope, now: number) {
    const st = this.state(sender.id);
    st.granted++;
    st.nextSlotAt = undefined;
    st.reason = undefined;
    this.#log.append(sender.pacingKey, { t: now, m: `${env.messageId}:${env.attempt}`, r: Math.max(1, env.recipientCount) });
  }

  /** Rebuilds one pacing key's window and day state from the durable pacing log, under a lock. */
  async #rebuild(key: string, rate: RateConfig): Promise<void> {
    const k = this.keys(key);
    const token = randomBytes(8).toString('hex');
    if ((await this.#redis.set(k.lock, token, 'PX', REBUILD_LOCK_MS, 'NX')) !== 'OK') {
      await sleep(200); // another replica is rebuilding
      return;
    }
    try {
      // Rebuilt by another replica while we waited for the lock: its state is newer than the log.
      if (await this.#redis.exists(k.epoch)) return;
      const [secs, micros] = await this.#redis.time();
      const now = Number(secs) * 1000 + Math.floor(Number(micros) / 1000);
      const interval = rate.intervalMs ?? 0;
      const dayw = rate.dailyRecipients || rate.dailyMessages ? rate.dailyWindowMs : 0;
      // A minute of margin for clock differences between JetStream and Redis.
      const since = now - Math.max(interval, dayw) - 60_000;
      // A message granted twice (it asked again after a grant it did not use) counts once.
      const byMember = new Map<string, Grant>();
      for (const g of await this.#log.read(key, since)) {
        const seen = byMember.get(g.m);
        if (!seen || seen.t < g.t) byMember.set(g.m, g);
      }
      const grants = [...byMember.values()];
      const m = this.#redis.multi().del(k.win, k.day, k.totals);
      let rcpt = 0;
      let msgs = 0;
      for (const g of grants) {
        if (interval && g.t > now - interval) m.zadd(k.win, g.t, g.m);
        if (dayw && g.t > now - dayw) {
          m.zadd(k.day, g.t, `${g.m}|${g.r}`);
          rcpt += g.r;
          msgs++;
        }
      }
      if (dayw)
        m.hset(k.totals, 'rcpt', rcpt, 'msgs', msgs)
          .pexpire(k.day, dayw * 2)
          .pexpire(k.totals, dayw * 2);
      if (interval) m.pexpire(k.win, interval * 2);
      m.set(k.epoch, String(now));
      await m.exec();
      this.#logger.info({ pacing_key: key, grants: grants.length }, 'pacing state rebuilt from the pacing log');
    } finally {
      if ((await this.#redis.get(k.lock).catch(() => null)) === token) await this.#redis.del(k.lock).catch(() => {});
    }
  }

  #redisFailed(err: unknown) {
    if (this.#redisDown) return;
    this.#redisDown = true;
    this.#logger.error({ err: describe(err) }, 'Redis unavailable: paced senders hold their mail until it is back');
  }

  #redisUp() {
    if (!this.#redisDown) return;
    this.#redisDown = false;
    this.#logger.info('Redis is back: pacing resumes');
  }

  get redisDown() {
    return this.#redisDown;
  }

  async close(): Promise<void> {
    // The Redis connection belongs to the scheduler, which closes it.
  }
}
