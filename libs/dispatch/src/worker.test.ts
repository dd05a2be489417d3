import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notStarted, permanent } from '@relay/core';
import { EnvelopeSchema, MessageState, type Envelope } from '@relay/proto';
import { dropBus, eventually as until, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { connectBus, ensureDurable, timestampFromDate, type Bus } from '@relay/bus';
import { createDispatchWorker, type DispatchWorker } from './worker.js';

const quiet = { warn() {}, info() {}, debug() {} };

describe('dispatch worker against a real NATS JetStream', () => {
  const prefix = uniquePrefix('worker');
  let bus: Bus;
  let worker: DispatchWorker;
  const delivered: string[] = [];
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'worker-test' });
    worker = createDispatchWorker({
      bus,
      transport: 'smtp',
      service: 'test',
      concurrency: 4,
      ackWaitMs: 5_000,
      retry: { retryInitialMs: 1_000, retryMaxMs: 1_000, maxAgeMs: 60_000 },
      log: quiet,
      async deliver(env: Envelope) {
        if (env.subject === 'reject me') throw permanent('550 5.1.1 no such user', { remedy: 'Check the address.' });
        delivered.push(env.messageId);
        return `250 ok ${env.messageId}`;
      },
    });
    await worker.start();
  });
  afterAll(async () => {
    await worker?.stop(2_000);
    await bus?.close();
    await dropBus(prefix);
  });

  const dispatch = (id: string, subject = 'hello') =>
    bus.publishEnvelope(
      bus.names.dispatchSubject('smtp', 's1'),
      create(EnvelopeSchema, { messageId: id, sender: 's1', to: ['a@b.example'], subject, text: 'x', attempt: 1, submittedAt: timestampFromDate(new Date()) }),
      `${id}.1.dispatch`,
    );

  it('settles a delivered message as SENT with the reply, and a 5xx as FAILED with its remedy', async () => {
    await dispatch('w-ok');
    await dispatch('w-bad', 'reject me');
    const ok = await until(async () => ((await bus.lastStatus('w-ok'))?.state === MessageState.SENT ? bus.lastStatus('w-ok') : undefined));
    expect(ok?.detail).toBe('250 ok w-ok');
    const bad = await until(async () => ((await bus.lastStatus('w-bad'))?.state === MessageState.FAILED ? bus.lastStatus('w-bad') : undefined));
    // The remedy follows the reply in detail, and goes on its own too, for the timeline.
    expect(bad?.detail).toBe('550 5.1.1 no such user — Check the address.');
    expect(bad?.remedy).toBe('Check the address.');
    expect(delivered).not.toContain('w-bad');
  });

  it('keeps working after its consumer is deleted under it', async () => {
    await bus.jsm.consumers.delete(bus.names.dispatchStream, bus.names.senderConsumer('smtp'));
    await dispatch('w-after');
    const sent = await until(async () => ((await bus.lastStatus('w-after'))?.state === MessageState.SENT ? bus.lastStatus('w-after') : undefined), 15_000);
    expect(sent?.detail).toBe('250 ok w-after');
    expect(delivered.filter((id) => id === 'w-after')).toHaveLength(1);
  }, 20_000);
});

describe('dispatch worker after a crash that kept an ack from the broker', () => {
  const prefix = uniquePrefix('worker-crash');
  let bus: Bus;
  let worker: DispatchWorker | undefined;
  const attempts: string[] = [];
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'worker-crash-test' });
  });
  afterAll(async () => {
    await worker?.stop(2_000);
    await bus?.close();
    await dropBus(prefix);
  });

  it('does not make an attempt again whose retry was already decided, nor one a later attempt replaced', async () => {
    const ackWaitMs = 1_000;
    const durable = bus.names.senderConsumer('smtp');
    await ensureDurable(bus.jsm, {
      stream: bus.names.dispatchStream,
      durable,
      filterSubject: bus.names.dispatchWildcard('smtp'),
      ackWaitMs,
      maxAckPending: 1_000,
    });
    const env = create(EnvelopeSchema, {
      messageId: 'w-crash',
      sender: 's1',
      to: ['a@b.example'],
      subject: 'x',
      text: 'x',
      attempt: 1,
      submittedAt: timestampFromDate(new Date()),
    });
    await bus.publishEnvelope(bus.names.dispatchSubject('smtp', 's1'), env, 'w-crash.1.dispatch');
    // A replica took attempt 1, failed it, recorded RETRYING and published the retry, then died
    // before its ack reached the broker.
    const taken = await (await bus.js.consumers.get(bus.names.dispatchStream, durable)).next({ expires: 2_000 });
    expect(taken?.seq).toBeGreaterThan(0);
    await bus.publishStatus({ messageId: 'w-crash', sender: 's1', state: MessageState.RETRYING, attempt: 1, detail: '451 4.3.0 try later', service: 'test' });
    await bus.publishEnvelope(bus.names.submittedSubject('s1'), create(EnvelopeSchema, { ...env, attempt: 2 }), 'w-crash.2.submit');
    // Another message's attempt 1 was taken the same way, and its attempt 2 is already under way.
    await bus.publishEnvelope(bus.names.dispatchSubject('smtp', 's1'), create(EnvelopeSchema, { ...env, messageId: 'w-old' }), 'w-old.1.dispatch');
    expect((await (await bus.js.consumers.get(bus.names.dispatchStream, durable)).next({ expires: 2_000 }))?.seq).toBeGreaterThan(0);
    await bus.publishStatus({ messageId: 'w-old', sender: 's1', state: MessageState.SENDING, attempt: 2, detail: '', service: 'test' });

    worker = createDispatchWorker({
      bus,
      transport: 'smtp',
      service: 'test',
      concurrency: 4,
      ackWaitMs,
      retry: { retryInitialMs: 1_000, retryMaxMs: 1_000, maxAgeMs: 60_000 },
      log: quiet,
      async deliver(e: Envelope) {
        attempts.push(`${e.messageId}#${e.attempt}`);
        return '250 ok';
      },
    });
    await worker.start();
    // The redelivered attempt 1 is settled without an attempt; the retry stays stored once.
    await until(
      async () =>
        (await bus.jsm.consumers.info(bus.names.dispatchStream, durable)).num_ack_pending === 0 &&
        (await bus.jsm.consumers.info(bus.names.dispatchStream, durable)).num_pending === 0
          ? true
          : undefined,
      10_000,
    );
    expect(attempts).toEqual([]);
    expect((await bus.lastStatus('w-crash'))?.state).toBe(MessageState.RETRYING);
    expect((await bus.lastStatus('w-old'))?.state).toBe(MessageState.SENDING);
    const submitted = await bus.jsm.streams.info(bus.names.submittedStream, { subjects_filter: bus.names.submittedSubject('s1') });
    expect(submitted.state.subjects?.[bus.names.submittedSubject('s1')]).toBe(1);
  }, 20_000);
});

describe('dispatch worker stopping while a delivery waits to start', () => {
  const prefix = uniquePrefix('worker-stop');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'worker-stop-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  it('hands the message back at once, counts no attempt, and another replica sends it', async () => {
    const waitingToStart: string[] = [];
    const sent: string[] = [];
    const replica = (waitForSlot: boolean) =>
      createDispatchWorker({
        bus,
        transport: 'graph',
        service: 'test',
        concurrency: 2,
        ackWaitMs: 30_000,
        retry: { retryInitialMs: 1_000, retryMaxMs: 1_000, maxAgeMs: 600_000 },
        log: quiet,
        async deliver(env: Envelope, stopping: AbortSignal) {
          if (waitForSlot) {
            // Stands for a wait for a mailbox slot that never comes before the stop.
            waitingToStart.push(env.messageId);
            await new Promise<void>((resolve) => stopping.addEventListener('abort', () => resolve(), { once: true }));
            throw notStarted('the service is stopping; no slot yet');
          }
          sent.push(`${env.messageId}#${env.attempt}`);
          return '202 Accepted';
        },
      });
    const stuck = replica(true);
    await stuck.start();
    await bus.publishEnvelope(
      bus.names.dispatchSubject('graph', 's1'),
      create(EnvelopeSchema, {
        messageId: 'h-1',
        sender: 's1',
        to: ['x@y.example'],
        subject: 's',
        text: 't',
        attempt: 1,
        submittedAt: timestampFromDate(new Date()),
      }),
      'h-1.1.dispatch',
    );
    await until(() => (waitingToStart.includes('h-1') ? true : undefined));
    const t0 = Date.now();
    await stuck.stop(20_000);
    // The stop did not sit out its grace period (20 s) or the ack wait (30 s).
    expect(Date.now() - t0).toBeLessThan(10_000);
    const history = await bus.history('h-1');
    expect(history.map((e) => MessageState[e.state])).toEqual(['SENDING']);

    const other = replica(false);
    await other.start();
    await until(async () => ((await bus.lastStatus('h-1'))?.state === MessageState.SENT ? true : undefined), 10_000);
    await other.stop(2_000);
    // Sent once, as attempt 1: the handed-back try was not counted.
    expect(sent).toEqual(['h-1#1']);
  }, 30_000);
});
