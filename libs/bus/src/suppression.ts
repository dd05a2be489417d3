import { createHash } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import type { Bus } from './bus.js';

/** How long the suppression bucket keeps an entry (its max_age: NATS 2.9 has no per-key TTL). */
export const SUPPRESSION_MAX_AGE_MS = 90 * 86_400_000;
/** The most entries ingest holds in memory; past this, new ones are left out and logged. */
export const SUPPRESSION_MAX_ENTRIES = 1_000_000;

/** One hard bounce of an address, as the suppression bucket keeps it. */
export interface SuppressionEntry {
  address: string;
  /** When the report said it bounced (ms since the epoch). */
  at: number;
  status: string;
  diagnostic: string;
  message_id: string;
  sender: string;
}

/** The bucket key of an address: SHA-256 of the lower-cased address, hex (KV keys allow few characters). */
export function suppressionKey(address: string): string {
  return createHash('sha256').update(address.trim().toLowerCase()).digest('hex');
}

/** A permanent failure: an enhanced status code of class 5 (RFC 3463), e.g. 5.1.1. */
export function isPermanentStatus(status: string): boolean {
  return /^5\.\d{1,3}\.\d{1,3}$/.test(status.trim());
}

const buckets = new WeakMap<Bus, Promise<KV>>();

/** The `<prefix>-suppressed` bucket (made when missing), one handle per bus. */
export function openSuppressionBucket(bus: Bus): Promise<KV> {
  let kv = buckets.get(bus);
  if (!kv) {
    kv = new Kvm(bus.js).create(bus.names.suppressedBucket, {
      history: 1,
      ttl: SUPPRESSION_MAX_AGE_MS,
      replicas: bus.topology.replicas,
      maxValueSize: 4096,
    });
    kv.catch(() => buckets.delete(bus));
    buckets.set(bus, kv);
  }
  return kv;
}

/**
 * Puts each recipient a delivery report says bounced with a permanent status (5.x.x) in the
 * suppression bucket; a delayed or temporary (4.x.x) outcome puts nothing there.
 */
export async function recordSuppressions(
  bus: Bus,
  recipients: ReadonlyArray<{ recipient: string; outcome: string; status: string; diagnostic: string }>,
  about: { messageId: string; sender: string; at: Date },
): Promise<number> {
  const hard = recipients.filter((r) => r.outcome === 'bounced' && isPermanentStatus(r.status));
  if (hard.length === 0) return 0;
  const kv = await openSuppressionBucket(bus);
  for (const r of hard) {
    const entry: SuppressionEntry = {
      address: r.recipient.trim().toLowerCase(),
      at: about.at.getTime(),
      status: r.status.trim(),
      diagnostic: r.diagnostic.slice(0, 1000),
      message_id: about.messageId,
      sender: about.sender,
    };
    await kv.put(suppressionKey(entry.address), JSON.stringify(entry));
  }
  return hard.length;
}

/** Reads one entry's value; undefined when it is not a suppression entry. */
export function parseSuppressionEntry(value: Uint8Array | undefined): SuppressionEntry | undefined {
  if (!value || value.length === 0) return undefined;
  try {
    const v = JSON.parse(new TextDecoder().decode(value)) as Partial<SuppressionEntry>;
    if (typeof v.address !== 'string' || typeof v.at !== 'number') return undefined;
    return {
      address: v.address,
      at: v.at,
      status: String(v.status ?? ''),
      diagnostic: String(v.diagnostic ?? ''),
      message_id: String(v.message_id ?? ''),
      sender: String(v.sender ?? ''),
    };
  } catch {
    return undefined;
  }
}

export interface SuppressionList {
  /** The address's latest hard bounce, if the bucket has one. */
  lookup(address: string): SuppressionEntry | undefined;
  /** Every entry held (within the bucket's 90 days), in no order. */
  entries(): SuppressionEntry[];
  /** Deletes the address's entry from the bucket (and from memory at once); false when it had none. */
  remove(address: string): Promise<boolean>;
  readonly size: number;
  stop(): Promise<void>;
}

/**
 * Follows the suppression bucket into memory (a watch), so a check costs no broker call; holds
 * at most `maxEntries` and logs when the bucket has more. Resolves once the stored entries are in
 * (or after `readyFallbackMs`).
 */
export async function watchSuppressions(
  bus: Bus,
  opts: { maxEntries?: number; readyFallbackMs?: number; onError?: (err: unknown) => void; onFull?: (size: number) => void } = {},
): Promise<SuppressionList> {
  const max = opts.maxEntries ?? SUPPRESSION_MAX_ENTRIES;
  const kv = await openSuppressionBucket(bus);
  const entries = new Map<string, SuppressionEntry>();
  let warned = false;
  const pending = (await kv.status()).streamInfo.state.messages;
  const iter = await kv.watch();
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  if (pending === 0) markReady();
  const fallback = setTimeout(markReady, opts.readyFallbackMs ?? 10_000);
  void ready.then(() => clearTimeout(fallback));
  const done = (async () => {
    for await (const e of iter) {
      if (e.operation === 'PUT') {
        const entry = parseSuppressionEntry(e.value);
        if (entry && (entries.has(e.key) || entries.size < max)) entries.set(e.key, entry);
        else if (entry && !warned) {
          warned = true;
          opts.onFull?.(entries.size);
        }
      } else entries.delete(e.key);
      if (e.delta === 0) markReady();
    }
  })().catch((err: unknown) => opts.onError?.(err));
  await ready;
  return {
    lookup: (address) => {
      const e = entries.get(suppressionKey(address));
      // The bucket's max_age removes old entries without a delete marker the watch would see.
      return e && Date.now() - e.at < SUPPRESSION_MAX_AGE_MS ? e : undefined;
    },
    entries: () => [...entries.values()].filter((e) => Date.now() - e.at < SUPPRESSION_MAX_AGE_MS),
    async remove(address) {
      const key = suppressionKey(address);
      const had = entries.has(key) || (await kv.get(key))?.operation === 'PUT';
      if (!had) return false;
      await kv.delete(key);
      entries.delete(key);
      return true;
    },
    get size() {
      return entries.size;
    },
    async stop() {
      iter.stop();
      await done;
    },
  };
}
