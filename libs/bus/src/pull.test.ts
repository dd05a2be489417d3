import { connect } from '@nats-io/transport-node';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testNatsUrl, uniquePrefix } from '@relay/testkit';
import { pullMessages } from './pull.js';

describe('pullMessages against a real NATS JetStream', () => {
  const prefix = uniquePrefix('pull');
  const stream = prefix.toUpperCase().replace(/-/g, '_');
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  /** Every pull request sent to a consumer, as the server received it. */
  const requests = new Map<string, Array<{ batch: number; expires?: number }>>();

  beforeAll(async () => {
    nc = await connect({ servers: testNatsUrl(), noAsyncTraces: true });
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`] });
    nc.subscribe(`$JS.API.CONSUMER.MSG.NEXT.${stream}.*`, {
      callback: (_e, m) => {
        const consumer = m.subject.split('.').at(-1)!;
        requests.set(consumer, [...(requests.get(consumer) ?? []), m.json()]);
      },
    });
    await nc.flush();
  });
  afterAll(async () => {
    await jsm?.streams.delete(stream).catch(() => {});
    await nc?.close();
  });

  async function consumer(name: string, ackWaitMs = 60_000) {
    await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.Explicit, ack_wait: ackWaitMs * 1e6, filter_subject: `${prefix}.${name}` });
  }
  async function publish(name: string, n: number, from = 0) {
    for (let i = from; i < from + n; i++) {
      const h = headers();
      h.set('traceparent', `00-0af7651916cd43dd8448eb211c80319c-${String(i).padStart(16, '0')}-01`);
      await js.publish(`${prefix}.${name}`, new TextEncoder().encode(`m${i}`), { headers: h });
    }
  }
  /** Takes `n` messages off the iterator, acking each. */
  async function take(it: AsyncIterator<JsMsg>, n: number): Promise<string[]> {
    const got: string[] = [];
    while (got.length < n) {
      const r = await it.next();
      if (r.done) break;
      got.push(r.value.string());
      r.value.ack();
    }
    return got;
  }
  const ackPending = async (name: string) => (await jsm.consumers.info(stream, name)).num_ack_pending;

  it('hands on every message once, in order, as a JsMsg that acks, and a lone message at once', async () => {
    await consumer('a');
    await publish('a', 50);
    const pulled = await pullMessages(js, stream, 'a', { batch: 20 });
    const it = pulled[Symbol.asyncIterator]();
    expect(await take(it, 50)).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
    expect(requests.get('a')!.every((r) => r.batch <= 20)).toBe(true);
    await nc.flush();
    await expect.poll(() => ackPending('a')).toBe(0);
    // A message coming to an idle consumer is not held back for company.
    const lone = it.next();
    const t0 = performance.now();
    await publish('a', 1, 50);
    expect((await lone).value?.string()).toBe('m50');
    expect(performance.now() - t0).toBeLessThan(1_000);
    pulled.stop();
    expect((await it.next()).done).toBe(true);
  });

  it('holds at most `batch` messages that were pulled and not handed on', async () => {
    await consumer('b');
    await publish('b', 12);
    const pulled = await pullMessages(js, stream, 'b', { batch: 3 });
    const it = pulled[Symbol.asyncIterator]();
    expect(await take(it, 1)).toEqual(['m0']);
    // Nobody asks for the next message: the others stay in the stream, not in this buffer.
    await expect.poll(() => ackPending('b')).toBe(2);
    await new Promise((r) => setTimeout(r, 300));
    expect(await ackPending('b')).toBe(2);
    expect(await take(it, 11)).toHaveLength(11);
    pulled.stop();
  });

  it('gives what it pulled but did not hand on back to the consumer when stopped, not after the ack wait', async () => {
    await consumer('c', 120_000);
    await publish('c', 20);
    const first = await pullMessages(js, stream, 'c', { batch: 100, expiresMs: 1_000 });
    const it = first[Symbol.asyncIterator]();
    expect(await take(it, 2)).toEqual(['m0', 'm1']);
    await expect.poll(() => ackPending('c')).toBe(18);
    first.stop();
    expect((await it.next()).done).toBe(true);
    // The ack wait is two minutes: only a nak brings them back within this test.
    const second = await pullMessages(js, stream, 'c', { batch: 100 });
    const again = await take(second[Symbol.asyncIterator](), 18);
    expect(again.sort()).toEqual(Array.from({ length: 18 }, (_, i) => `m${i + 2}`).sort());
    second.stop();
  });

  it('ends at once when stopped during an idle pull, not when the pull expires', async () => {
    await consumer('e');
    // Ten minutes: far past the test's timeout, so only abandoning the pull lets it pass.
    const pulled = await pullMessages(js, stream, 'e', { batch: 10, expiresMs: 600_000 });
    const it = pulled[Symbol.asyncIterator]();
    const next = it.next();
    await expect.poll(() => requests.get('e')?.length ?? 0).toBeGreaterThanOrEqual(1);
    pulled.stop();
    expect((await next).done).toBe(true);
  });

  it('fails when the consumer is deleted or missing, so the caller opens it again', async () => {
    await consumer('d');
    const pulled = await pullMessages(js, stream, 'd', { batch: 10, expiresMs: 1_000 });
    const next = pulled[Symbol.asyncIterator]().next();
    next.catch(() => {});
    await expect.poll(() => requests.get('d')?.length ?? 0).toBeGreaterThanOrEqual(1);
    await jsm.consumers.delete(stream, 'd');
    await expect(next).rejects.toThrow(/consumer/i);
    await expect(pullMessages(js, stream, 'nobody', { batch: 10 })).rejects.toThrow(/consumer not found/i);
  });
});
