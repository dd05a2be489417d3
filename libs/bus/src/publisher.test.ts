import { connect } from '@nats-io/transport-node';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { JetStreamApiError, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testNatsUrl, uniquePrefix } from '@relay/testkit';
import { AckedPublisher, PublishTimeoutError } from './publisher.js';

describe('AckedPublisher against a real NATS JetStream', () => {
  const prefix = uniquePrefix('pub');
  const stream = prefix.toUpperCase().replace(/-/g, '_');
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let pub: AckedPublisher;
  beforeAll(async () => {
    nc = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.js.>`], max_msg_size: 1024, duplicate_window: 60e9 });
    pub = new AckedPublisher(nc, 300);
  });
  afterAll(async () => {
    pub?.close();
    await jsm?.streams.delete(stream).catch(() => {});
    await nc?.close();
  });

  it('resolves with the stored sequence, dedupes on the message id and keeps the headers', async () => {
    const h = headers();
    h.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    const acks = await Promise.all([1, 2, 3].map((i) => pub.publish(`${prefix}.js.a`, new TextEncoder().encode(`m${i}`), `id-${i}`, i === 1 ? h : undefined)));
    expect(acks.map((a) => a.stream)).toEqual([stream, stream, stream]);
    expect(new Set(acks.map((a) => a.seq)).size).toBe(3);
    const again = await pub.publish(`${prefix}.js.a`, new TextEncoder().encode('m1'), 'id-1');
    expect(again).toMatchObject({ duplicate: true, seq: acks[0]!.seq });
    const stored = await jsm.streams.getMessage(stream, { seq: acks[0]!.seq });
    expect(stored?.header.get('traceparent')).toBe(h.get('traceparent'));
    expect(stored?.header.get('Nats-Msg-Id')).toBe('id-1');
    // Without a message id nothing is deduped.
    const [x, y] = await Promise.all([0, 1].map(() => pub.publish(`${prefix}.js.b`, new Uint8Array([1]))));
    expect(x!.seq).not.toBe(y!.seq);
  });

  it("rejects with JetStream's own error when the stream refuses the message", async () => {
    const err = await pub.publish(`${prefix}.js.big`, new Uint8Array(4096), 'big').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JetStreamApiError);
    expect((err as Error).message).toMatch(/message size exceeds maximum/i);
  });

  it('rejects at once when no stream takes the subject', async () => {
    const t0 = Date.now();
    const err = await pub.publish(`${prefix}.nostream`, new Uint8Array([1]), 'x').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/no JetStream stream takes .*nostream/);
    expect(Date.now() - t0).toBeLessThan(300);
  });

  it('rejects with a timeout when nobody acknowledges, and ignores a late answer', async () => {
    // A plain subscriber takes the subject and answers only after the deadline.
    const sub = nc.subscribe(`${prefix}.slow`, { callback: (_e, m) => void setTimeout(() => m.respond(JSON.stringify({ stream: 'late', seq: 1 })), 900) });
    const err = await pub.publish(`${prefix}.slow`, new Uint8Array([1]), 'slow').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PublishTimeoutError);
    expect((err as Error).message).toContain(`${prefix}.slow`);
    await new Promise((r) => setTimeout(r, 1_000)); // the late answer arrives and is dropped
    const ok = await pub.publish(`${prefix}.js.c`, new Uint8Array([1]), 'after-late');
    expect(ok.stream).toBe(stream);
    sub.unsubscribe();
  });

  it('fails what is still waiting when closed', async () => {
    const mine = new AckedPublisher(nc, 10_000);
    const sub = nc.subscribe(`${prefix}.never`, { callback: () => {} });
    const waiting = mine.publish(`${prefix}.never`, new Uint8Array([1]), 'never').catch((e: unknown) => e);
    await nc.flush();
    mine.close();
    expect(((await waiting) as Error).message).toBe('connection closed');
    sub.unsubscribe();
  });
});
