import { nanos, PermissionViolationError } from '@nats-io/nats-core';
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { BusNames } from './names.js';

const STREAM_NAME_IN_USE = 10058;

export interface TopologyOptions {
  /** Stream replicas; 3 in a production cluster. */
  replicas: number;
  /** How long status history is kept. */
  statusMaxAgeMs: number;
  /** How long an idempotency key is remembered (at least 24 h). */
  idempotencyTtlMs: number;
  /** JetStream dedupe window for Nats-Msg-Id. */
  duplicateWindowMs: number;
  /** How long a FAILED message's envelope (and its index entry) is kept for RetryMessages. */
  failedRetentionMs: number;
  /** Operator-set limits per stream or bucket (relay.yaml `limits.store`); missing ones take STORE_DEFAULTS. */
  limits: Partial<Record<StoreName, StoreLimit>>;
}

/** A limit of -1 means none. */
export interface StoreLimit {
  maxMessages?: number | undefined;
  maxBytes?: number | undefined;
}

export type StoreName = 'submitted' | 'held' | 'dispatch' | 'status' | 'pacing' | 'bodies' | 'failed' | 'messages' | 'idempotency';

/**
 * Mail streams refuse new messages when full (DiscardNew): SendMail then answers
 * RESOURCE_EXHAUSTED, the scheduler leaves mail where it is, and nothing stored is dropped. Byte
 * limits are off by default: JetStream reserves a stream's max_bytes on the server at creation.
 */
export const STORE_DEFAULTS: Record<StoreName, Required<StoreLimit>> = {
  submitted: { maxMessages: 10_000_000, maxBytes: -1 },
  held: { maxMessages: 10_000_000, maxBytes: -1 },
  dispatch: { maxMessages: 10_000_000, maxBytes: -1 },
  status: { maxMessages: -1, maxBytes: -1 },
  pacing: { maxMessages: -1, maxBytes: -1 },
  bodies: { maxMessages: -1, maxBytes: -1 },
  failed: { maxMessages: -1, maxBytes: -1 },
  messages: { maxMessages: -1, maxBytes: -1 },
  idempotency: { maxMessages: -1, maxBytes: -1 },
};

export const TOPOLOGY_DEFAULTS: TopologyOptions = {
  replicas: 1,
  statusMaxAgeMs: 7 * 86_400_000,
  idempotencyTtlMs: 48 * 3_600_000,
  duplicateWindowMs: 10 * 60_000,
  failedRetentionMs: 7 * 86_400_000,
  limits: {},
};

/** The limits in force for one stream or bucket. */
export function storeLimit(o: TopologyOptions, name: StoreName): Required<StoreLimit> {
  const set = o.limits[name] ?? {};
  const d = STORE_DEFAULTS[name];
  return { maxMessages: set.maxMessages ?? d.maxMessages, maxBytes: set.maxBytes ?? d.maxBytes };
}

function limitFields(o: TopologyOptions, name: StoreName): { max_msgs: number; max_bytes: number } {
  const l = storeLimit(o, name);
  return { max_msgs: l.maxMessages, max_bytes: l.maxBytes };
}

export function streamConfigs(n: BusNames, o: TopologyOptions): Array<Partial<StreamConfig> & { name: string }> {
  const common = { storage: StorageType.File, num_replicas: o.replicas, duplicate_window: nanos(o.duplicateWindowMs) };
  return [
    // New mail has one consumer, the scheduler's intake, which purges what lies below its ack
    // floor (all acked) every few seconds, or within 200 ms at moderate rates (why: intake.ts,
    // IntakeOptions): on NATS 2.9's file store removing messages one by one at ack time
    // (work-queue retention) costs more CPU than storing and delivering them, a purge much less.
    // No age limit, and a full stream refuses new mail (discard new): nothing unacked is ever
    // removed.
    {
      ...common,
      name: n.submittedStream,
      subjects: [n.submittedWildcard],
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      ...limitFields(o, 'submitted'),
    },
    // Work queues: a message leaves the stream when the consumer that owns its subject acks it.
    // Its own stream: its per-sender consumers are many, and a stream's cost per stored message
    // grows with its consumers (NATS 2.9), so new mail does not pay for them.
    // Direct gets: the scheduler reads held mail without consuming it to find what expired.
    {
      ...common,
      name: n.heldStream,
      subjects: [n.heldWildcard],
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.New,
      allow_direct: true,
      ...limitFields(o, 'held'),
    },
    {
      ...common,
      name: n.dispatchStream,
      subjects: [`${n.prefix}.dispatch.>`],
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.New,
      ...limitFields(o, 'dispatch'),
    },
    {
      ...common,
      name: n.statusStream,
      subjects: [n.statusWildcard],
      retention: RetentionPolicy.Limits,
      max_age: nanos(o.statusMaxAgeMs),
      // History, not mail: the oldest goes first when full.
      discard: DiscardPolicy.Old,
      allow_direct: true,
      ...limitFields(o, 'status'),
    },
    {
      ...common,
      name: n.pacingStream,
      subjects: [`${n.prefix}.pacing.>`],
      retention: RetentionPolicy.Limits,
      // A day's grants (the longest pacing window) plus a margin.
      max_age: nanos(25 * 3_600_000),
      discard: DiscardPolicy.Old,
      ...limitFields(o, 'pacing'),
    },
  ];
}

/**
 * Creates the streams if they are missing; concurrent starts of several services are fine. An
 * existing stream takes the configured limits (so an operator's change applies at the next start).
 */
export async function ensureStreams(jsm: JetStreamManager, configs: Array<Partial<StreamConfig> & { name: string }>) {
  for (const cfg of configs) {
    try {
      const info = await jsm.streams.info(cfg.name);
      await applyLimits(jsm, info.config, cfg);
      continue;
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    }
    try {
      await jsm.streams.add(cfg);
    } catch (err) {
      // Another service created it between our info and add.
      if (!(err instanceof JetStreamApiError) || err.code !== STREAM_NAME_IN_USE) throw err;
    }
  }
}

const LIMIT_KEYS = ['max_msgs', 'max_bytes', 'max_age'] as const;

/**
 * Updates a stream's limits (message count, bytes, age) where they differ from `want`. A service
 * whose NATS user may not update streams (only the scheduler's may) leaves them to the scheduler
 * rather than failing its start.
 */
export async function applyLimits(jsm: JetStreamManager, have: StreamConfig, want: Partial<StreamConfig>): Promise<void> {
  const changed = LIMIT_KEYS.filter((k) => want[k] !== undefined && want[k] !== have[k]);
  if (changed.length === 0) return;
  const next = { ...have };
  for (const k of changed) (next as Record<string, unknown>)[k] = want[k];
  try {
    await jsm.streams.update(have.name, next);
  } catch (err) {
    if (!isPermissionViolation(err)) throw err;
  }
}

function isPermissionViolation(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return true;
  return false;
}
