import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { Metadata } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { PacingLog, scanIndex, type Bus } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import {
  GetQueueStatsResponseSchema,
  MessageState,
  SenderQueueStatsSchema,
  type GetQueueStatsRequest,
  type GetQueueStatsResponse,
  type MessageRecord,
  type SenderQueueStats,
} from '@relay/proto';
import type { Logger } from '@relay/telemetry';
import { requireAdmin, type Authenticator } from './auth.js';
import { isPaced, pacingView, readPacing } from './pacing-view.js';

export interface QueueStatsContext {
  bus: Bus;
  auth: Authenticator;
  /** The configured senders, by id. */
  senders: ReadonlyMap<string, SenderConfig>;
  /** Where the scheduler keeps pacing state; without it (or while it is away) the pacing log is read. */
  redis: Redis | undefined;
  /** RELAY_BUS_PREFIX: the scheduler's Redis keys start with it too. */
  prefix: string;
  logger: Logger;
}

/**
 * Most index records one GetQueueStats reads. The per-state counts come from the message index
 * (one small record per message, kept for delivery.failed_retention), read in one pass for every
 * sender; past this many records the counts are lower bounds and a warning is logged.
 */
export const INDEX_SCAN_MAX = 200_000;
const DAY_MS = 86_400_000;
const UUID_V7 = /^([0-9a-f]{8})-([0-9a-f]{4})-7[0-9a-f]{3}-/;

interface Counts {
  queued: number;
  sending: number;
  retrying: number;
  failed24h: number;
  /** Acceptance time (ms) of the oldest message not yet sent. */
  oldest: number;
}

/** When a message was accepted: its id is a UUIDv7 (time first); other ids give their record's time. */
function acceptedAt(r: MessageRecord): number {
  const m = UUID_V7.exec(r.messageId);
  if (m) return Number.parseInt(m[1]! + m[2]!, 16);
  return r.updatedAt ? timestampDate(r.updatedAt).getTime() : Date.now();
}

/** How long one scan of the message index answers GetQueueStats calls. */
const SCAN_REUSE_MS = 2_000;
const emptyCounts = (): Counts => ({ queued: 0, sending: 0, retrying: 0, failed24h: 0, oldest: Number.POSITIVE_INFINITY });

/** AdminService.GetQueueStats: per sender, what waits, what is held by its pace, and its daily cap. */
export function createQueueStatsHandler(ctx: QueueStatsContext) {
  const log = new PacingLog(ctx.bus);

  // One scan of the index serves every call for a moment: `relay queue --watch` on several
  // terminals, or a console page per operator, then cost one scan, not one each.
  let recent: { at: number; counts: Promise<Map<string, Counts>> } | undefined;

  function countFromIndex(ids: Set<string>, now: number): Promise<Map<string, Counts>> {
    if (!recent || now - recent.at > SCAN_REUSE_MS) {
      const counts = scanCounts(now);
      recent = { at: now, counts };
      counts.catch(() => {
        if (recent?.counts === counts) recent = undefined;
      });
    }
    return recent.counts.then((all) => new Map([...ids].map((id) => [id, all.get(id) ?? emptyCounts()])));
  }

  async function scanCounts(now: number): Promise<Map<string, Counts>> {
    const counts = new Map<string, Counts>();
    const scan = await scanIndex(ctx.bus, INDEX_SCAN_MAX, (r) => {
      let c = counts.get(r.sender);
      if (!c) counts.set(r.sender, (c = emptyCounts()));
      if (r.state === MessageState.QUEUED) c.queued++;
      else if (r.state === MessageState.SENDING) c.sending++;
      else if (r.state === MessageState.RETRYING) c.retrying++;
      else if (r.state === MessageState.FAILED && r.updatedAt && timestampDate(r.updatedAt).getTime() >= now - DAY_MS) c.failed24h++;
      if (r.state === MessageState.QUEUED || r.state === MessageState.SENDING || r.state === MessageState.RETRYING)
        c.oldest = Math.min(c.oldest, acceptedAt(r));
    });
    if (!scan.complete)
      ctx.logger.warn({ read: scan.visited }, `GetQueueStats read the first ${INDEX_SCAN_MAX} records of the message index only; counts are lower bounds`);
    return counts;
  }

  /** Messages of each sender in the held stream (parked by the scheduler: pace, daily cap, send_at, retry time). */
  async function heldInStream(senders: SenderConfig[]): Promise<Map<string, number>> {
    const { names } = ctx.bus;
    const filter = senders.length === 1 ? names.heldSubject(senders[0]!.id) : names.heldWildcard;
    const info = await ctx.bus.jsm.streams.info(names.heldStream, { subjects_filter: filter });
    const subjects = info.state.subjects ?? {};
    return new Map(senders.map((s) => [s.id, subjects[names.heldSubject(s.id)] ?? 0]));
  }

  async function statsOf(sender: SenderConfig, c: Counts, inHeld: number, now: number): Promise<SenderQueueStats> {
    // A RETRYING message's next attempt is parked in the held stream until its time: the rest of
    // the held stream is mail that has not had an attempt yet (waiting for the pace, the daily cap,
    // or its send_at).
    const held = Math.min(c.queued, Math.max(0, inHeld - c.retrying));
    const stats = create(SenderQueueStatsSchema, {
      sender: sender.id,
      queued: BigInt(c.queued),
      held: BigInt(held),
      retrying: BigInt(c.retrying),
      sending: BigInt(c.sending),
      failed24h: BigInt(c.failed24h),
      oldestAgeSeconds: BigInt(Number.isFinite(c.oldest) ? Math.max(0, Math.floor((now - c.oldest) / 1000)) : 0),
      dailyRecipientCap: BigInt(sender.rate?.dailyRecipients ?? 0),
    });
    const rate = sender.rate;
    if (isPaced(rate)) {
      const view = pacingView(await readPacing(ctx.redis, log, ctx.prefix, sender, rate), rate);
      stats.recipientsToday = BigInt(view.recipientsToday);
      if (held > 0) stats.nextReleaseAt = timestampFromMs(view.nextSlotAt);
    }
    return stats;
  }

  return async function getQueueStats(call: { metadata: Metadata; request: GetQueueStatsRequest }): Promise<GetQueueStatsResponse> {
    requireAdmin(ctx.auth, call.metadata);
    const id = call.request.sender;
    if (id.length > 256) throw new RelayError(ErrorCode.InvalidArgument, 'sender: at most 256 characters');
    let senders: SenderConfig[];
    if (id) {
      const s = ctx.senders.get(id);
      if (!s) throw new RelayError(ErrorCode.NotFound, `sender: no sender "${id}" is configured`);
      senders = [s];
    } else {
      senders = [...ctx.senders.values()];
    }
    if (senders.length === 0) return create(GetQueueStatsResponseSchema, {});
    const now = Date.now();
    try {
      const [counts, held] = await Promise.all([countFromIndex(new Set(senders.map((s) => s.id)), now), heldInStream(senders)]);
      const out: SenderQueueStats[] = [];
      for (const s of senders) out.push(await statsOf(s, counts.get(s.id)!, held.get(s.id) ?? 0, now));
      return create(GetQueueStatsResponseSchema, { senders: out });
    } catch (err) {
      throw new RelayError(ErrorCode.Unavailable, 'queue figures are unavailable: the message broker did not answer, or refused a read; retry', { cause: err });
    }
  };
}
