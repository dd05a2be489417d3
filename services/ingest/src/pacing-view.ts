import type { Redis } from 'ioredis';
import { pacingRedisKeys, type PacingLog } from '@relay/bus';
import type { RateConfig, SenderConfig } from '@relay/config';

/** A look at one pacing key's state: the grants that still count, on the clock that decided them. */
export interface PacingSnapshot {
  /** Now, in ms, on the clock the scheduler's decisions use (Redis' own; the local one for the log). */
  now: number;
  /** Grant times in the interval window. */
  window: number[];
  /** Grants in the daily window: time and recipients counted. */
  day: Array<{ t: number; r: number }>;
  /** Where it was read: Redis, or the durable pacing log when Redis has no state (lost, or unreachable). */
  source: 'redis' | 'pacing-log';
}

/** What GetQueueStats shows of a sender's pacing. */
export interface PacingView {
  recipientsToday: number;
  /** When the sender's next message may go (ms); `now` when there is room right now. */
  nextSlotAt: number;
}

export function isPaced(rate: RateConfig | undefined): rate is RateConfig {
  return !!rate && ((!!rate.batchSize && !!rate.intervalMs) || !!rate.dailyRecipients || !!rate.dailyMessages);
}

const dailyCapped = (rate: RateConfig) => !!rate.dailyRecipients || !!rate.dailyMessages;

/**
 * Reads a sender's pacing state without changing it, the way the scheduler keeps it (RedisPacer in
 * services/scheduler): from Redis when its state is there, in one MULTI so the keys agree;
 * otherwise from the pacing log in JetStream, which is what the scheduler rebuilds Redis from.
 */
export async function readPacing(redis: Redis | undefined, log: PacingLog, prefix: string, sender: SenderConfig, rate: RateConfig): Promise<PacingSnapshot> {
  if (redis) {
    const fromRedis = await readRedis(redis, prefix, sender.pacingKey, rate).catch(() => undefined);
    if (fromRedis) return fromRedis;
  }
  return readLog(log, sender.pacingKey, rate, Date.now());
}

async function readRedis(redis: Redis, prefix: string, key: string, rate: RateConfig): Promise<PacingSnapshot | undefined> {
  const k = pacingRedisKeys(prefix, key);
  const res = await redis.multi().time().exists(k.epoch).zrange(k.win, '0', '-1', 'WITHSCORES').zrange(k.day, '0', '-1', 'WITHSCORES').exec();
  if (!res || res.some(([err]) => err)) return undefined;
  const [secs, micros] = res[0]![1] as [string, string];
  const now = Number(secs) * 1000 + Math.floor(Number(micros) / 1000);
  // No epoch: Redis lost the state; the scheduler rebuilds it from the log at its next look.
  if (res[1]![1] === 0) return undefined;
  const pairs = (flat: string[]) => Array.from({ length: flat.length / 2 }, (_, i) => ({ member: flat[2 * i]!, t: Number(flat[2 * i + 1]) }));
  const window = pairs(res[2]![1] as string[]).map((p) => p.t);
  const day = pairs(res[3]![1] as string[]).map((p) => ({ t: p.t, r: Number(/\|(\d+)$/.exec(p.member)?.[1] ?? 1) }));
  return inWindows({ now, window, day, source: 'redis' }, rate);
}

async function readLog(log: PacingLog, key: string, rate: RateConfig, now: number): Promise<PacingSnapshot> {
  const interval = rate.intervalMs ?? 0;
  const dayw = dailyCapped(rate) ? rate.dailyWindowMs : 0;
  // The same reach and the same dedupe as the scheduler's rebuild: a message granted twice counts once.
  const latest = new Map<string, { t: number; r: number }>();
  for (const g of await log.read(key, now - Math.max(interval, dayw) - 60_000)) {
    const seen = latest.get(g.m);
    if (!seen || seen.t < g.t) latest.set(g.m, { t: g.t, r: g.r });
  }
  const grants = [...latest.values()];
  return inWindows({ now, window: grants.map((g) => g.t), day: dayw ? grants : [], source: 'pacing-log' }, rate);
}

/** Keeps what still counts: as the scheduler's script, a grant at or before now − window has expired. */
function inWindows(s: PacingSnapshot, rate: RateConfig): PacingSnapshot {
  const interval = rate.intervalMs ?? 0;
  return {
    ...s,
    window: rate.batchSize && interval ? s.window.filter((t) => t > s.now - interval).sort((a, b) => a - b) : [],
    day: dailyCapped(rate) ? s.day.filter((g) => g.t > s.now - rate.dailyWindowMs).sort((a, b) => a.t - b.t) : [],
  };
}

/**
 * The recipients counted today and when the next message may go, by the rules of the scheduler's
 * acquire script (pacing-script.ts) for a message of one recipient, the smallest there is.
 */
export function pacingView(s: PacingSnapshot, rate: RateConfig): PacingView {
  const recipientsToday = s.day.reduce((n, g) => n + g.r, 0);
  let next = s.now;
  const batch = rate.batchSize ?? 0;
  if (batch > 0 && rate.intervalMs && s.window.length >= batch) next = Math.max(next, s.window[s.window.length - batch]! + rate.intervalMs);
  const rcap = rate.dailyRecipients ?? 0;
  const mcap = rate.dailyMessages ?? 0;
  const tr = recipientsToday;
  const tm = s.day.length;
  if ((rcap > 0 && tr + 1 > rcap && tr > 0) || (mcap > 0 && tm + 1 > mcap)) {
    // Room comes back as the oldest grants leave the rolling window.
    let freedAt = s.now + rate.dailyWindowMs;
    let fr = 0;
    for (let i = 0; i < s.day.length; i++) {
      fr += s.day[i]!.r;
      const okR = rcap === 0 || tr - fr + 1 <= rcap || tr - fr === 0;
      const okM = mcap === 0 || tm - (i + 1) + 1 <= mcap;
      if (okR && okM) {
        freedAt = s.day[i]!.t + rate.dailyWindowMs;
        break;
      }
    }
    next = Math.max(next, freedAt);
  }
  return { recipientsToday, nextSlotAt: next };
}
