import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EnvelopeSchema, MessageState, type Envelope } from '@relay/proto';
import { dropBus, eventually as until, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { connectBus, encodeEnvelope, ENVELOPE_SIG_INVALID, signEnvelope, timestampFromDate, type Bus } from '@relay/bus';
import { createDispatchWorker, type DispatchWorker } from './worker.js';

const quiet = { warn() {}, info() {}, debug() {} };
const key = randomBytes(32);

describe('dispatch worker: forged dispatches', () => {
  let prefix: string;
  let bus: Bus;
  let worker: DispatchWorker | undefined;
  const deliveries: string[] = [];

  beforeEach(async () => {
    deliveries.length = 0;
    prefix = uniquePrefix('worker-forged');
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'worker-forged-test' });
    worker = createDispatchWorker({
      bus,
      transport: 'smtp',
      service: 'test',
      concurrency: 4,
      ackWaitMs: 2_000,
      retry: { retryInitialMs: 1_000, retryMaxMs: 1_000, maxAgeMs: 600_000 },
      envelopeKeys: { current: key },
      log: quiet,
      async deliver(env: Envelope) {
        deliveries.push(env.messageId);
        return '250 ok';
      },
    });
    await worker.start();
  });
  afterEach(async () => {
    await worker?.stop(2_000);
    await bus?.close();
    await dropBus(prefix);
  });

  const envelope = (id: string) =>
    create(EnvelopeSchema, {
      messageId: id,
      sender: 's1',
      client: 'app',
      to: ['a@b.example'],
      subject: 'x',
      text: 'x',
      attempt: 1,
      submittedAt: timestampFromDate(new Date()),
    });
  const dispatch = (env: Envelope) => bus.publishEnvelope(bus.names.dispatchSubject('smtp', 's1'), env, `${env.messageId}.${env.attempt}.dispatch`);
  const drained = () =>
    until(async () => {
      const info = await bus.jsm.consumers.info(bus.names.dispatchStream, bus.names.senderConsumer('smtp'));
      return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
    });

  it('does not fail a message ingest accepted when an unsigned dispatch names it', async () => {
    await bus.publishStatus({
      messageId: 'real-1',
      sender: 's1',
      client: 'app',
      state: MessageState.QUEUED,
      attempt: 0,
      detail: 'accepted',
      service: 'relay-ingest',
    });
    await dispatch(envelope('real-1'));
    await drained();
    expect(deliveries).toEqual([]);
    expect((await bus.lastStatus('real-1'))?.state).toBe(MessageState.QUEUED);
  });

  it('does not send another message by pointing a new id at its stored body', async () => {
    const victim = signEnvelope(key, envelope('victim-1'));
    await bus.bodies.putBlob({ name: 'victim-1' }, encodeEnvelope(victim));
    const stub = create(EnvelopeSchema, { messageId: 'forged-1', sender: 's1', attempt: 1, bodyRef: 'victim-1', ingestSig: victim.ingestSig });
    await dispatch(stub);
    await drained();
    expect(deliveries).toEqual([]);
    expect((await bus.lastStatus('forged-1'))?.detail).toBe(ENVELOPE_SIG_INVALID);
  });

  it('sends a signed message as usual', async () => {
    await dispatch(signEnvelope(key, envelope('good-1')));
    await until(async () => ((await bus.lastStatus('good-1'))?.state === MessageState.SENT ? true : undefined));
    expect(deliveries).toEqual(['good-1']);
  });
});
