import { connect } from '@nats-io/transport-node';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testNatsUrl, uniquePrefix } from '@relay/testkit';
import { coalesceWrites, installedNatsVersion, NATS_WRITTEN_FOR } from './nats-internals.js';

/** Counts the buffers nats.js hands its socket. */
function countSends(nc: NatsConnection): { readonly count: number } {
  const transport = (nc as unknown as { protocol: { transport: { send(b: Uint8Array): unknown } } }).protocol.transport;
  const send = transport.send.bind(transport);
  const counter = { count: 0 };
  transport.send = (b) => {
    counter.count++;
    return send(b);
  };
  return counter;
}

/** Publishes `n` messages, each after a microtask hop, as handlers working through a batch do. */
async function publishHopping(nc: NatsConnection, subject: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await Promise.resolve();
    nc.publish(subject, `m${i}`);
  }
}

async function collect(sub: Subscription, n: number): Promise<string[]> {
  const got: string[] = [];
  for await (const m of sub) {
    got.push(m.string());
    if (got.length === n) break;
  }
  return got;
}

describe('nats-internals', () => {
  it('was written for the installed nats.js: after an upgrade, check this file against the new one and update the version', () => {
    for (const [pkg, version] of Object.entries(NATS_WRITTEN_FOR))
      expect(`${pkg} ${installedNatsVersion(pkg as keyof typeof NATS_WRITTEN_FOR)}`).toBe(`${pkg} ${version}`);
  });
});

describe('coalesceWrites against a real NATS', () => {
  const prefix = uniquePrefix('coalesce');
  let reader: NatsConnection;
  beforeAll(async () => {
    reader = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
  });
  afterAll(async () => {
    await reader?.close();
  });

  it('writes what was published over many microtask runs in one turn at once, in order', async () => {
    const plain = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
    const coalesced = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
    coalesceWrites(coalesced);
    try {
      const sub = reader.subscribe(`${prefix}.order`);
      await reader.flush();
      const plainSends = countSends(plain);
      const coalescedSends = countSends(coalesced);
      await publishHopping(plain, `${prefix}.plain`, 50);
      await publishHopping(coalesced, `${prefix}.order`, 50);
      // Without it nats.js writes after each microtask run: one write per message here.
      expect(plainSends.count).toBeGreaterThanOrEqual(25);
      // With it nothing has gone out yet within this turn ...
      expect(coalescedSends.count).toBe(0);
      await new Promise((r) => setImmediate(r));
      // ... and then all of it in one write.
      expect(coalescedSends.count).toBe(1);
      expect(await collect(sub, 50)).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
    } finally {
      await plain.close();
      await coalesced.close();
    }
  });

  it("writes at once when the buffer passes nats.js's own limit (32 KiB), as nats.js does", async () => {
    const nc = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
    coalesceWrites(nc);
    try {
      const sends = countSends(nc);
      nc.publish(`${prefix}.big`, 'small');
      expect(sends.count).toBe(0);
      nc.publish(`${prefix}.big`, new Uint8Array(40 * 1024));
      expect(sends.count).toBe(1);
    } finally {
      await nc.close();
    }
  });

  it('still writes what was published just before close or drain', async () => {
    for (const end of ['close', 'drain'] as const) {
      const nc = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
      coalesceWrites(nc);
      const sub = reader.subscribe(`${prefix}.${end}`);
      await reader.flush();
      nc.publish(`${prefix}.${end}`, 'last');
      await (end === 'close' ? nc.close() : nc.drain());
      expect(await collect(sub, 1)).toEqual(['last']);
    }
  });

  it('keeps request and reply working (flush and PING go through it too)', async () => {
    const nc = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
    coalesceWrites(nc);
    const sub = reader.subscribe(`${prefix}.echo`, { callback: (_e, m) => void m.respond(`re:${m.string()}`) });
    await reader.flush();
    try {
      await nc.flush();
      const replies = await Promise.all([1, 2, 3].map((i) => nc.request(`${prefix}.echo`, `q${i}`, { timeout: 5_000 })));
      expect(replies.map((r) => r.string())).toEqual(['re:q1', 're:q2', 're:q3']);
    } finally {
      sub.unsubscribe();
      await nc.close();
    }
  });
});
