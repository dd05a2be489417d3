import { createHash, randomUUID } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Bus } from './bus.js';

/**
 * How long the report readers' bucket keeps a folder's record (its max_age): every pass writes it
 * again, so only the records of folders nobody reads any more go.
 */
export const REPORT_CLAIM_MAX_AGE_MS = 30 * 86_400_000;
/** The largest cursor a folder may keep (JSON bytes). */
export const MAX_REPORT_CURSOR_BYTES = 4096;

/** A folder's record in the bucket. */
interface ClaimRecord {
  /** Until when (ms since the epoch) the replica that took the last pass keeps the folder. */
  until: number;
  replica: string;
  /** Where reading the folder got to, as the reader keeps it (JSON). */
  cursor?: unknown;
}

/** One pass over a folder, taken by this replica. */
export interface ReportClaim {
  /** Where the last pass of any replica got to; undefined before the first. */
  cursor: unknown;
  /** Keeps where this pass got to for the next one (of any replica); lost only if the pass overran its interval. */
  save(cursor: unknown): Promise<void>;
}

/** Shares report-folder passes among the replicas of a sender service. */
export interface ReportClaims {
  /**
   * Takes the next pass over the folder `key` for this replica and keeps it for `intervalMs`;
   * `{ busyUntil }` when another replica read it less than its interval ago (or just took it).
   */
  take(key: string, intervalMs: number): Promise<ReportClaim | { busyUntil: number }>;
}

const buckets = new WeakMap<Bus, Promise<KV>>();

function openBucket(bus: Bus): Promise<KV> {
  let kv = buckets.get(bus);
  if (!kv) {
    kv = new Kvm(bus.js).create(bus.names.reportReadersBucket, {
      history: 1,
      ttl: REPORT_CLAIM_MAX_AGE_MS,
      replicas: bus.topology.replicas,
      maxValueSize: MAX_REPORT_CURSOR_BYTES + 256,
    });
    kv.catch(() => buckets.delete(bus));
    buckets.set(bus, kv);
  }
  return kv;
}

/** The bucket key of a folder: SHA-256 of its key (KV keys allow few characters). */
function bucketKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * Report claims kept in the `<prefix>-report-readers` bucket: a pass is taken with a
 * compare-and-set on the folder's record, so of the replicas that look at a due folder at the
 * same moment exactly one reads it, and the cursor it leaves is where the next one starts.
 */
export function reportClaims(bus: Bus, replica: string = randomUUID()): ReportClaims {
  return {
    async take(key, intervalMs) {
      const kv = await openBucket(bus);
      const k = bucketKey(key);
      const now = Date.now();
      const entry = await kv.get(k);
      const held = entry && entry.operation === 'PUT' ? parseRecord(entry.string()) : undefined;
      if (held && held.until > now) return { busyUntil: held.until };
      const until = now + intervalMs;
      const record: ClaimRecord = { until, replica, ...(held?.cursor !== undefined ? { cursor: held.cursor } : {}) };
      let revision: number;
      try {
        revision = entry ? await kv.update(k, JSON.stringify(record), entry.revision) : await kv.create(k, JSON.stringify(record));
      } catch (err) {
        // Another replica wrote the record since it was read: that one has this pass.
        if (isWrongRevision(err)) return { busyUntil: until };
        throw err;
      }
      return {
        cursor: held?.cursor,
        async save(cursor) {
          const json = JSON.stringify({ until, replica, cursor } satisfies ClaimRecord);
          if (Buffer.byteLength(json) > MAX_REPORT_CURSOR_BYTES)
            throw new Error(`report cursor of ${Buffer.byteLength(json)} bytes is over ${MAX_REPORT_CURSOR_BYTES}`);
          try {
            revision = await kv.update(k, json, revision);
          } catch (err) {
            if (!isWrongRevision(err)) throw err;
          }
        },
      };
    },
  };
}

function parseRecord(text: string): ClaimRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<ClaimRecord>;
    return typeof r.until === 'number' && typeof r.replica === 'string' ? (r as ClaimRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** The broker's answer to a create or update whose expected revision no longer holds. */
function isWrongRevision(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
