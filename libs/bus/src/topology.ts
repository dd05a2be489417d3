import { nanos } from '@nats-io/nats-core';
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
}

export const TOPOLOGY_DEFAULTS: TopologyOptions = {
  replicas: 1,
  statusMaxAgeMs: 7 * 86_400_000,
  idempotencyTtlMs: 48 * 3_600_000,
  duplicateWindowMs: 10 * 60_000,
};

export function streamConfigs(n: BusNames, o: TopologyOptions): Array<Partial<StreamConfig> & { name: string }> {
  const common = { storage: StorageType.File, num_replicas: o.replicas, duplicate_window: nanos(o.duplicateWindowMs) };
  return [
    // New mail has one consumer, the scheduler's intake, which purges what lies below its ack
    // floor (all acked) every few seconds, or within 200 ms at moderate rates (why: intake.ts,
    // IntakeOptions): on NATS 2.9's file store removing messages one by one at ack time
    // (work-queue retention) cost about twice the CPU of storing and delivering them, a purge much
    // less. No age or size limit: nothing unacked is ever removed.
    // (A stream made by an earlier version keeps work-queue retention, which works the same.)
    { ...common, name: n.submittedStream, subjects: [n.submittedWildcard], retention: RetentionPolicy.Limits },
    // Work queues: a message leaves the stream when the consumer that owns its subject acks it.
    // Its own stream: its per-sender consumers are many, and a stream's cost per stored message
    // grows with its consumers (NATS 2.9), so new mail does not pay for them.
    { ...common, name: n.heldStream, subjects: [n.heldWildcard], retention: RetentionPolicy.Workqueue },
    { ...common, name: n.dispatchStream, subjects: [`${n.prefix}.dispatch.>`], retention: RetentionPolicy.Workqueue },
    {
      ...common,
      name: n.statusStream,
      subjects: [n.statusWildcard],
      retention: RetentionPolicy.Limits,
      max_age: nanos(o.statusMaxAgeMs),
      discard: DiscardPolicy.Old,
      allow_direct: true,
    },
    {
      ...common,
      name: n.pacingStream,
      subjects: [`${n.prefix}.pacing.>`],
      retention: RetentionPolicy.Limits,
      // A day's grants (the longest pacing window) plus a margin.
      max_age: nanos(25 * 3_600_000),
      discard: DiscardPolicy.Old,
    },
  ];
}

/** Creates the streams if they are missing; concurrent starts of several services are fine. */
export async function ensureStreams(jsm: JetStreamManager, configs: Array<Partial<StreamConfig> & { name: string }>) {
  for (const cfg of configs) {
    try {
      await jsm.streams.info(cfg.name);
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
