import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
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
    const streams = [n.submittedStream, n.heldStream, n.dispatchStream, n.statusStream, n.pacingStream, `KV_${n.idempotencyBucket}`, `OBJ_${n.bodyBucket}`, `OBJ_${n.failedBucket}`, `KV_${n.messagesBucket}`, `KV_${prefix}-secrets`];
    for (const s of streams) await jsm.streams.delete(s).catch(() => {});
  } finally {
    await nc.close();
  }
}
