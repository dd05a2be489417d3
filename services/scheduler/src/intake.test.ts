import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { AckPolicy } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/nats-core';
import { connectBus, decodeEnvelope, type Bus } from '@relay/bus';
import { parseConfig, readEnv } from '@relay/config';
import { EnvelopeSchema, MessageState } from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { dropBus, testNatsUrl, testRedisUrl, uniquePrefix } from '@relay/testkit';
import { createServer, connect as tcpConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Pacer } from './pacer.js';
import { purgeDue, type IntakeOptions } from './intake.js';
import { createScheduler, type Scheduler } from './scheduler.js';

/**
 * The intake against the real NATS and Redis, in process: what it does with the submitted stream
 * (purging acked mail, never unacked; leaving other consumers alone) and with mail of a sender the configuration does not have.
 */
const logger = createLogger({ service: 'test', level: 'silent' });
const yaml = (ids: string[]) =>
  `clients: [{ name: app, api_key: test-key-0123456789abcdef0123456789, senders: [${ids.join(', ')}] }]\nsenders:\n` +
  ids.map((id) => `  - { id: ${id}, from: ${id}@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2587, security: none } }\n`).join('');

let cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  cleanup = [];
});

async function setup(label: string, opts: { before?: (bus: Bus) => Promise<void>; redisUrl?: string; intake?: Partial<IntakeOptions> } = {}) {
  const prefix = uniquePrefix(label);
  cleanup.push(() => dropBus(prefix));
  const bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'intake-test' });
  cleanup.push(() => bus.close());
  const released: string[] = [];
  const sub: Subscription = bus.nc.subscribe(`${prefix}.dispatch.>`, { callback: (_e, m) => void released.push(decodeEnvelope(m.data).messageId) });
  cleanup.push(async () => sub.unsubscribe());
  await opts.before?.(bus);
  const env = readEnv({
    NATS_URL: testNatsUrl(),
    REDIS_URL: opts.redisUrl ?? testRedisUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_METRICS_PORT: '0',
    RELAY_HOST: '127.0.0.1',
    RELAY_SHUTDOWN_GRACE: '2s',
  });
  const start = async (ids: string[], extra = '', pacer?: Pacer) => {
    const s = await createScheduler(
      { env, config: parseConfig(yaml(ids) + extra, {}), logger, intake: { compactEveryMs: 500, compactCheckMs: 100, ...opts.intake } },
      pacer ? { pacer } : {},
    );
    await s.start();
    cleanup.push(() => s.stop());
    return s;
  };
  let n = 0;
  const submit = async (sender: string, count: number) => {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = `${sender}-${++n}`;
      ids.push(id);
      const e = create(EnvelopeSchema, {
        messageId: id,
        sender,
        to: ['a@campus.example'],
        subject: id,
        attempt: 1,
        recipientCount: 1,
        submittedAt: timestampFromDate(new Date()),
      });
      await bus.publishEnvelope(bus.names.submittedSubject(sender), e, `${id}.submit`);
    }
    return ids;
  };
  const until = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000) => {
    const end = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stream = () => bus.jsm.streams.info(bus.names.submittedStream);
  return { bus, released, start, submit, until, stream };
}

/** A TCP proxy to Redis that can stop passing anything on: Redis still connected, but silent. */
async function freezableRedis() {
  const target = new URL(testRedisUrl());
  const sockets: Socket[] = [];
  let frozen = false;
  const server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port || 6379), target.hostname);
    sockets.push(client, upstream);
    client.on('data', (d) => void (frozen || upstream.write(d)));
    upstream.on('data', (d) => void (frozen || client.write(d)));
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    freeze: () => void (frozen = true),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('when the intake purges', () => {
  const opts = { compactEveryMs: 5_000, compactTailMessages: 256, compactEarlyPerS: 1_000 };
  it('purges at once while mail comes slowly and little stays behind, so the block being written stays small', () => {
    expect(purgeDue({ floor: 500, purgedBelow: 400, tail: 0, sinceLastMs: 200 }, opts)).toBe(true);
    expect(purgeDue({ floor: 600, purgedBelow: 400, tail: 256, sinceLastMs: 200 }, opts)).toBe(true); // 1,000/s
  });
  it('with a backlog behind the floor, or mail coming fast, purges only every compactEveryMs', () => {
    expect(purgeDue({ floor: 500, purgedBelow: 400, tail: 257, sinceLastMs: 4_999 }, opts)).toBe(false);
    expect(purgeDue({ floor: 601, purgedBelow: 400, tail: 0, sinceLastMs: 200 }, opts)).toBe(false); // over 1,000/s
    expect(purgeDue({ floor: 500, purgedBelow: 400, tail: 50_000, sinceLastMs: 5_000 }, opts)).toBe(true);
    expect(purgeDue({ floor: 90_000, purgedBelow: 400, tail: 0, sinceLastMs: 5_000 }, opts)).toBe(true);
  });
  it('never purges when nothing new has been acked', () => {
    expect(purgeDue({ floor: 400, purgedBelow: 400, tail: 0, sinceLastMs: 60_000 }, opts)).toBe(false);
  });
});

describe('scheduler intake', () => {
  it('purges mail it has acked from the submitted stream, and never mail still unacked', async () => {
    const t = await setup('intake-purge');
    await t.start(['free']);
    const first = await t.submit('free', 100);
    await t.until('100 released', () => first.every((id) => t.released.includes(id)));
    await t.until('acked mail purged', async () => (await t.stream()).state.messages === 0);
    expect((await t.stream()).state.first_seq).toBe(101);

    // The next hop is gone: dispatching fails, the intake naks, nothing is acked.
    await t.bus.jsm.streams.delete(t.bus.names.dispatchStream);
    const stuck = await t.submit('free', 70);
    const intake = () => t.bus.jsm.consumers.info(t.bus.names.submittedStream, 'scheduler');
    await t.until('the stuck mail taken in', async () => (await intake()).delivered.stream_seq === 170);
    // Then five purge looks: each asks for the intake consumer's info (the test asks no more now).
    let looks = 0;
    const api = t.bus.nc.subscribe(`$JS.API.CONSUMER.INFO.${t.bus.names.submittedStream}.scheduler`, { callback: () => void looks++ });
    await t.until('five purge looks', () => looks >= 5);
    api.unsubscribe();
    const held = await t.stream();
    expect(held.state.messages).toBe(70);
    expect(held.state.first_seq).toBe(101);
    const consumer = await intake();
    expect(consumer.ack_floor.stream_seq).toBe(100);
    expect(consumer.num_pending + consumer.num_ack_pending).toBe(70);

    // Back again: all of them go, then leave the stream.
    const again = await connectBus({ servers: testNatsUrl(), prefix: t.bus.names.prefix, name: 'intake-test-2' });
    await again.close();
    const dispatched = async () => (await t.bus.jsm.streams.info(t.bus.names.dispatchStream)).state.messages;
    await t.until('the stuck mail dispatched', async () => (await dispatched()) === stuck.length, 15_000);
    await t.until('and purged', async () => (await t.stream()).state.messages === 0);
  }, 40_000);

  it('purges acked mail long before compactEveryMs while mail comes slowly', async () => {
    const t = await setup('intake-early', { intake: { compactEveryMs: 120_000, compactCheckMs: 100 } });
    await t.start(['free']);
    const ids = await t.submit('free', 20);
    await t.until('20 released', () => ids.every((id) => t.released.includes(id)));
    await t.until('acked mail purged early', async () => (await t.stream()).state.messages === 0, 5_000);
    expect((await t.stream()).state.first_seq).toBe(21);
  });

  it("leaves another consumer of the submitted stream alone (an operator's, for debugging)", async () => {
    const t = await setup('intake-other', {
      before: async (bus) => {
        await bus.jsm.consumers.add(bus.names.submittedStream, {
          durable_name: 'debug',
          filter_subject: bus.names.submittedWildcard,
          ack_policy: AckPolicy.Explicit,
        });
      },
    });
    await t.start(['a']);
    const ids = await t.submit('a', 2);
    await t.until('released', () => ids.every((id) => t.released.includes(id)));
    const names = [];
    for await (const c of t.bus.jsm.consumers.list(t.bus.names.submittedStream)) names.push(c.name);
    expect(names.sort()).toEqual(['debug', 'scheduler']);
  });

  it('holds mail of a sender the configuration does not have, and releases it once it does', async () => {
    const t = await setup('intake-unknown');
    const s: Scheduler = await t.start(['known']);
    const [lost] = await t.submit('later', 1);
    const [ok] = await t.submit('known', 1);
    await t.until('the known sender released', () => t.released.includes(ok!));
    const subject = t.bus.names.heldSubject('later');
    await t.until(
      'the unknown sender held',
      async () => (await t.bus.jsm.streams.info(t.bus.names.heldStream, { subjects_filter: subject })).state.subjects?.[subject] === 1,
    );
    expect(t.released).not.toContain(lost);
    await s.reload(parseConfig(yaml(['known', 'later']), {}));
    await t.until('held mail released after the reload', () => t.released.includes(lost!));
  }, 30_000);

  it("keeps taking other senders' mail when Redis stops answering, holding the paced sender's", async () => {
    const redis = await freezableRedis();
    cleanup.push(async () => redis.close());
    const t = await setup('intake-slow', { redisUrl: redis.url });
    const paced = `  - { id: paced, from: paced@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2587, security: none }, rate: { batch_size: 1000, interval: 1s } }\n`;
    await t.start(['free'], paced);
    const [first] = await t.submit('paced', 1);
    await t.until('the paced sender released while Redis answers', () => t.released.includes(first!));
    redis.freeze();
    // More paced mail than the intake works on at once, then one message of an unpaced sender.
    const stuck = await t.submit('paced', 300);
    const [free] = await t.submit('free', 1);
    const t0 = Date.now();
    await t.until('the unpaced sender released', () => t.released.includes(free!), 10_000);
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(stuck.some((id) => t.released.includes(id))).toBe(false);
    const subject = t.bus.names.heldSubject('paced');
    await t.until(
      'the paced mail held',
      async () => ((await t.bus.jsm.streams.info(t.bus.names.heldStream, { subjects_filter: subject })).state.subjects?.[subject] ?? 0) === stuck.length,
    );
  }, 40_000);

  it('holds paced mail whose pacing look does not answer, instead of waiting for it', async () => {
    // A pacer that never answers: without the intake's own limit on the wait, the paced messages
    // would fill every slot of the intake for good and the unpaced one behind them never go.
    const silent: Pacer = {
      // Its lanes' waits end at shutdown, as the Redis pacer's do.
      acquire: (_s, _e, signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('stopping')))),
      tryAcquire: () => new Promise(() => {}),
      close: async () => {},
    };
    const t = await setup('intake-silent');
    const paced = `  - { id: paced, from: paced@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2587, security: none }, rate: { batch_size: 1000, interval: 1s } }\n`;
    await t.start(['free'], paced, silent);
    const stuck = await t.submit('paced', 300);
    const [free] = await t.submit('free', 1);
    await t.until('the unpaced sender released', () => t.released.includes(free!), 15_000);
    expect(stuck.some((id) => t.released.includes(id))).toBe(false);
  }, 30_000);

  it('dispatches no mail again that is already SENT or FAILED, from the intake or from a lane', async () => {
    const t = await setup('intake-settled');
    await t.start(['free']);
    const envelope = (id: string, sendAt?: Date) =>
      create(EnvelopeSchema, {
        messageId: id,
        sender: 'free',
        to: ['a@campus.example'],
        subject: id,
        attempt: 1,
        recipientCount: 1,
        submittedAt: timestampFromDate(new Date()),
        ...(sendAt ? { sendAt: timestampFromDate(sendAt) } : {}),
      });
    const submit = (id: string, sendAt?: Date) => t.bus.publishEnvelope(t.bus.names.submittedSubject('free'), envelope(id, sendAt), `${id}.1.submit`);
    const settle = (id: string, state: MessageState) => t.bus.publishStatus({ messageId: id, sender: 'free', state, attempt: 1, detail: '', service: 'test' });
    // Submitted again after it was sent or failed (as when a broker restart lost the ack).
    await settle('sent-before', MessageState.SENT);
    await settle('failed-before', MessageState.FAILED);
    await submit('sent-before');
    await submit('failed-before');
    // Held for its send_at, and sent meanwhile by an earlier copy.
    const due = new Date(Date.now() + 1_500);
    await submit('sent-while-held', due);
    await submit('held-marker', due);
    const held = t.bus.names.heldSubject('free');
    await t.until(
      'mail held for its time',
      async () => (await t.bus.jsm.streams.info(t.bus.names.heldStream, { subjects_filter: held })).state.subjects?.[held] === 2,
    );
    await settle('sent-while-held', MessageState.SENT);
    await submit('marker');
    await t.until('the markers released', () => t.released.includes('marker') && t.released.includes('held-marker'), 15_000);
    const idle = async (stream: string, durable: string) => {
      const info = await t.bus.jsm.consumers.info(stream, durable);
      return info.num_pending + info.num_ack_pending === 0;
    };
    await t.until(
      'everything acked',
      async () => (await idle(t.bus.names.submittedStream, 'scheduler')) && (await idle(t.bus.names.heldStream, 'scheduler-free')),
    );
    expect(t.released).not.toContain('sent-before');
    expect(t.released).not.toContain('failed-before');
    expect(t.released).not.toContain('sent-while-held');
  }, 30_000);
});
