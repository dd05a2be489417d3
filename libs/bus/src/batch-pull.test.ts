import { connect } from '@nats-io/transport-node';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testNatsUrl, uniquePrefix } from '@relay/testkit';
import { batchPull, PullFailed, type PulledMessages } from './nats-internals.js';

describe('batchPull against a real NATS JetStream', () => {
  const prefix = uniquePrefix('bpull');
  const stream = prefix.toUpperCase().replace(/-/g, '_');
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  /** Every pull request sent to a consumer, as the server received it. */
  const requests = new Map<string, Array<{ batch: number; no_wait?: boolean; expires?: number }>>();

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

  it('hands on every message once, in order, as a JsMsg that acks, and takes what gathered in one pull', async () => {
    await consumer('a');
    await publish('a', 50);
    const pulled = batchPull(nc, stream, 'a', { batch: 100, lingerMs: 20 });
    const it = pulled[Symbol.asyncIterator]();
    const got = await take(it, 50);
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`));
    // The first pull (idle) waits for one message; the next takes the other 49 at once.
    const asked = requests.get('a')!;
    expect(asked[0]).toMatchObject({ batch: 1 });
    expect(asked[0]!.expires).toBeGreaterThan(0);
    expect(asked[1]).toEqual({ batch: 100, no_wait: true });
    expect(asked.length).toBeLessThanOrEqual(3);

    // Acked: nothing is left pending for the consumer.
    await nc.flush();
    await expect.poll(async () => (await jsm.consumers.info(stream, 'a')).num_ack_pending).toBe(0);
    // Mail that comes while it lingers travels in one pull, and once a pull finds nothing the next
    // waits for the first message again.
    await publish('a', 10, 50);
    expect(await take(it, 10)).toEqual(Array.from({ length: 10 }, (_, i) => `m${50 + i}`));
    const lone = it.next();
    await expect.poll(() => requests.get('a')!.filter((r) => r.batch === 1).length).toBeGreaterThanOrEqual(2);
    await publish('a', 1, 60);
    expect((await lone).value?.string()).toBe('m60');
    pulled.stop();
    expect((await it.next()).done).toBe(true);
  });

  it('never asks for more than there is room for', async () => {
    await consumer('b');
    await publish('b', 12);
    let room = 3;
    const pulled = batchPull(nc, stream, 'b', { batch: 100, room: () => room, lingerMs: 5 });
    const it = pulled[Symbol.asyncIterator]();
    expect(await take(it, 12)).toHaveLength(12);
    expect(requests.get('b')!.every((r) => r.batch <= 3)).toBe(true);
    room = 0;
    const before = requests.get('b')!.length;
    const next = it.next();
    await new Promise((r) => setTimeout(r, 100));
    // No room: it does not pull at all.
    expect(requests.get('b')!.length).toBe(before);
    room = 5;
    await publish('b', 1, 12);
    expect((await next).value?.string()).toBe('m12');
    pulled.stop();
  });

  it('gives what it pulled but did not hand on back to the consumer when stopped, not after the ack wait', async () => {
    await consumer('c', 120_000);
    await publish('c', 20);
    const first = batchPull(nc, stream, 'c', { batch: 100, lingerMs: 5 });
    const it = first[Symbol.asyncIterator]();
    expect(await take(it, 2)).toEqual(['m0', 'm1']);
    // The second pull has brought the rest; stop before they are handed on.
    await expect.poll(() => requests.get('c')!.length).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 100));
    first.stop();
    expect((await it.next()).done).toBe(true);
    // The ack wait is two minutes: only a nak brings them back within this test.
    const second = batchPull(nc, stream, 'c', { batch: 100, lingerMs: 5 });
    const again = await take(second[Symbol.asyncIterator](), 18);
    expect(again.sort()).toEqual(Array.from({ length: 18 }, (_, i) => `m${i + 2}`).sort());
    second.stop();
  });

  it('ends at once when stopped during an idle pull, not when the pull expires', async () => {
    await consumer('e');
    await publish('e', 1);
    // Ten minutes: far past the test's timeout, so only abandoning the pull lets it pass.
    const pulled = batchPull(nc, stream, 'e', { batch: 100, lingerMs: 5, idleWaitMs: 600_000 });
    const it = pulled[Symbol.asyncIterator]();
    expect(await take(it, 1)).toEqual(['m0']);
    const next = it.next();
    // Mail has flowed and the consumer is empty again: the next pull waits for the first message.
    await expect.poll(() => requests.get('e')!.filter((r) => r.batch === 1 && (r.expires ?? 0) > 0).length).toBeGreaterThanOrEqual(2);
    pulled.stop();
    expect((await next).done).toBe(true);
  });

  it('fails when the consumer is deleted or missing, so the caller opens it again', async () => {
    await consumer('d');
    const pulled = batchPull(nc, stream, 'd', { batch: 10, lingerMs: 5, idleWaitMs: 1_000 });
    const it = pulled[Symbol.asyncIterator]();
    const next = it.next();
    next.catch(() => {});
    await expect.poll(() => requests.get('d')?.length ?? 0).toBeGreaterThanOrEqual(1);
    await jsm.consumers.delete(stream, 'd');
    await expect(next).rejects.toBeInstanceOf(PullFailed);

    // (Another stream's name: this file's own listener for pull requests would answer otherwise.)
    const missing: PulledMessages = batchPull(nc, `${stream}_NONE`, 'nobody', { batch: 10, lingerMs: 5, idleWaitMs: 1_000 });
    await expect(missing[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(PullFailed);
  });
});
