import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { retryable } from '@relay/core';
import { EnvelopeSchema, MessageState, type Envelope } from '@relay/proto';
import { dropBus, eventually as until, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { connectBus, decodeEnvelope, MAX_STATUS_DETAIL_BYTES, timestampDate, timestampFromDate, type Bus } from '@relay/bus';
import { createDispatchWorker, type DispatchWorker } from './worker.js';

const quiet = { warn() {}, info() {}, debug() {} };

/** A reply naming 30,000 refused recipients: well over the broker's 1 MB message limit. */
const HUGE_REPLY = `250 2.0.0 OK queued; refused recipients: ${Array.from({ length: 30_000 }, (_, i) => `refused-recipient-${i}@bcc.campus.example`).join(', ')}`;

describe('dispatch worker: each message is sent at most once', () => {
  // A bus of each test's own, so a message one test leaves behind cannot hold up another.
  let prefix: string;
  let bus: Bus;
  let worker: DispatchWorker | undefined;
  const deliveries: string[] = [];
  const replies = new Map<string, string>();
  const refuse = new Set<string>();

  beforeEach(async () => {
    prefix = uniquePrefix('worker-once');
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'worker-once-test' });
  });
  afterEach(async () => {
    await worker?.stop(2_000);
    worker = undefined;
    await bus?.close();
    await dropBus(prefix);
  });

  function start(b: Bus = bus, maxAgeMs = 600_000) {
    worker = createDispatchWorker({
      bus: b,
      transport: 'smtp',
      service: 'test',
      concurrency: 4,
      ackWaitMs: 2_000,
      retry: { retryInitialMs: 1_000, retryMaxMs: 1_000, maxAgeMs },
      log: quiet,
      async deliver(env: Envelope) {
        deliveries.push(env.messageId);
        if (refuse.has(env.messageId)) throw retryable('451 4.3.0 try again later');
        return replies.get(env.messageId) ?? '250 ok';
      },
    });
    return worker.start();
  }

  const dispatch = (id: string, fields: MessageInitShape<typeof EnvelopeSchema> = {}) =>
    bus.publishEnvelope(
      bus.names.dispatchSubject('smtp', 's1'),
      create(EnvelopeSchema, {
        messageId: id,
        sender: 's1',
        to: ['a@b.example'],
        subject: 'x',
        text: 'x',
        attempt: 1,
        submittedAt: timestampFromDate(new Date()),
        ...fields,
      }),
      `${id}.${fields.attempt ?? 1}.dispatch`,
    );

  /** Resolves once the worker has acked everything dispatched so far. */
  const drained = () =>
    until(async () => {
      const info = await bus.jsm.consumers.info(bus.names.dispatchStream, bus.names.senderConsumer('smtp'));
      return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
    });

  const sent = (id: string) => until(async () => ((await bus.lastStatus(id))?.state === MessageState.SENT ? bus.lastStatus(id) : undefined));

  it('records SENT once for a reply too large for one broker message, and sends it only once', async () => {
    replies.set('once-huge', HUGE_REPLY);
    await start();
    await dispatch('once-huge');
    const ev = await sent('once-huge');
    await drained();
    expect(deliveries.filter((id) => id === 'once-huge')).toHaveLength(1);
    expect(Buffer.byteLength(ev!.detail)).toBeLessThanOrEqual(MAX_STATUS_DETAIL_BYTES);
    expect(ev!.detail).toMatch(/^250 2\.0\.0 OK queued; refused recipients: refused-recipient-0@/);
  }, 30_000);

  it('keeps trying to record SENT when the write fails, rather than sending the message again', async () => {
    let failures = 3;
    const flaky: Bus = {
      ...bus,
      publishStatus(ev, headers, msgId) {
        if (ev.state === MessageState.SENT && failures-- > 0) return Promise.reject(new Error('JetStream did not acknowledge the publish'));
        return bus.publishStatus(ev, headers, msgId);
      },
    };
    await start(flaky);
    await dispatch('once-flaky');
    await sent('once-flaky');
    await drained();
    expect(failures).toBeLessThan(0);
    expect(deliveries.filter((id) => id === 'once-flaky')).toHaveLength(1);
    expect((await bus.history('once-flaky')).filter((e) => e.state === MessageState.SENT)).toHaveLength(1);
  }, 30_000);

  it('does not send a dispatched message whose SENT event is already stored', async () => {
    // As after a broker restart that forgot the dispatch was consumed: it is handed out as new.
    await bus.publishStatus({ messageId: 'once-done', sender: 's1', state: MessageState.SENT, attempt: 1, detail: '250 ok', service: 'test' });
    await bus.publishStatus({ messageId: 'once-failed', sender: 's1', state: MessageState.FAILED, attempt: 1, detail: '550 no', service: 'test' });
    await start();
    await dispatch('once-done');
    await dispatch('once-failed');
    await dispatch('once-after');
    await sent('once-after');
    await drained();
    expect(deliveries).not.toContain('once-done');
    expect(deliveries).not.toContain('once-failed');
    expect((await bus.history('once-done')).map((e) => MessageState[e.state])).toEqual(['SENT']);
  }, 30_000);

  it('counts delivery.max_age from the first attempt, not from submission, and carries that time to the retry', async () => {
    const hoursAgo = (h: number) => timestampFromDate(new Date(Date.now() - h * 3_600_000));
    refuse.add('age-new').add('age-old');
    await start(bus, 60_000);
    // Submitted two hours ago for a send_at an hour ago (or held behind a paced sender): its first
    // attempt is now, and a 4xx leaves it most of its max_age.
    await dispatch('age-new', { submittedAt: hoursAgo(2), sendAt: hoursAgo(1) });
    // Its first attempt was two hours ago: max_age is spent.
    await dispatch('age-old', { submittedAt: hoursAgo(3), firstAttemptAt: hoursAgo(2), attempt: 2 });
    const retrying = await until(async () => ((await bus.lastStatus('age-new'))?.state === MessageState.RETRYING ? true : undefined));
    expect(retrying).toBe(true);
    const failed = await until(async () => ((await bus.lastStatus('age-old'))?.state === MessageState.FAILED ? bus.lastStatus('age-old') : undefined));
    expect(failed!.detail).toMatch(/gave up after 2 attempts/);
    const retry = await (await bus.js.consumers.get(bus.names.submittedStream)).next({ expires: 5_000 });
    const next = decodeEnvelope(retry!.data);
    expect(next.messageId).toBe('age-new');
    expect(next.attempt).toBe(2);
    const first = timestampDate(next.firstAttemptAt!).getTime();
    expect(Date.now() - first).toBeLessThan(60_000);
  }, 30_000);
});
