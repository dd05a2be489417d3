import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { busNames } from '@relay/bus';

/** Where tests find NATS and Redis: NATS_URL / REDIS_URL, else the local defaults. */
export function testNatsUrl(): string {
  return process.env.NATS_URL || 'nats://127.0.0.1:4222';
}
export function testRedisUrl(): string {
  return process.env.REDIS_URL || 'redis://127.0.0.1:6379';
}

/** A bus prefix no other test run uses. */
export function uniquePrefix(label = 't'): string {
  return `${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`.toLowerCase();
}

/** Deletes every stream and bucket created under `prefix`. */
export async function dropBus(prefix: string, servers = testNatsUrl()): Promise<void> {
  const nc = await connect({ servers });
  try {
    const jsm = await jetstreamManager(nc);
    const n = busNames(prefix);
    const streams = [
      n.submittedStream,
      n.heldStream,
      n.dispatchStream,
      n.statusStream,
      n.pacingStream,
      `KV_${n.idempotencyBucket}`,
      `OBJ_${n.bodyBucket}`,
      `OBJ_${n.failedBucket}`,
      `KV_${n.messagesBucket}`,
      `KV_${n.sendersBucket}`,
      `KV_${n.clientsBucket}`,
      `KV_${n.consoleRevokedBucket}`,
      `KV_${prefix}-secrets`,
      n.webhooksStream,
      `KV_${n.webhookLogBucket}`,
      n.sentCopyStream,
      `KV_${n.suppressedBucket}`,
      `KV_${n.reportReadersBucket}`,
      `KV_${n.sentCopiesBucket}`,
    ];
    for (const s of streams) await jsm.streams.delete(s).catch(() => {});
  } finally {
    await nc.close();
  }
}

/**
 * Resolves once the durable consumer has handed out everything in its stream and had all of it
 * acked (num_pending + num_ack_pending = 0), so every message it took was processed: what a
 * "nothing else happened" check waits for instead of a fixed sleep. Rejects with its counters.
 */
export async function consumerSettled(jsm: JetStreamManager, stream: string, durable: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const info = await jsm.consumers.info(stream, durable);
    if (info.num_pending + info.num_ack_pending === 0) return;
    if (Date.now() > until) {
      throw new Error(
        `${stream}/${durable} not settled within ${timeoutMs} ms: ${info.num_pending} pending, ${info.num_ack_pending} unacked, ${info.num_redelivered} redelivered`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Resolves once every consumer of the relay's submitted and dispatch streams under `prefix` has
 * settled (consumerSettled): each accepted message went through the scheduler and, when due, a
 * sender, so a duplicate would have been delivered by now. Mail held for later is not waited for.
 */
export async function pipelineSettled(prefix: string, servers = testNatsUrl(), timeoutMs = 15_000): Promise<void> {
  const nc = await connect({ servers });
  try {
    const jsm = await jetstreamManager(nc);
    const n = busNames(prefix);
    for (const stream of [n.submittedStream, n.dispatchStream]) {
      const durables: string[] = [];
      for await (const c of jsm.consumers.list(stream)) durables.push(c.name);
      for (const durable of durables) await consumerSettled(jsm, stream, durable, timeoutMs);
    }
  } finally {
    await nc.close();
  }
}
