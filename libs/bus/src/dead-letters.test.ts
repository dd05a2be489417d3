import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JetStreamApiError } from '@nats-io/jetstream';
import { EnvelopeSchema, MessageState, StatusEventSchema } from '@relay/proto';
import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { connectBus, timestampFromDate, type Bus } from './bus.js';
import { packEnvelope } from './bodies.js';
import { deadLetter, keepFailed, loadFailed } from './dead-letters.js';
import { createMessageIndexer, foldIndexRecord, INDEX_BOUNDS, readIndex, readIndexRecord } from './message-index.js';

const silent = { warn() {}, info() {}, debug() {} };

describe('dead letters against a real NATS JetStream', () => {
  const prefix = uniquePrefix('dead');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'dead-letters-test', topology: { limits: { submitted: { maxMessages: 2 } } } });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  it('keeps a failed message with a body in the body store whole, and drops the body there', async () => {
    const content = new Uint8Array(2 * 1024 * 1024).map((_, i) => i % 253);
    const env = create(EnvelopeSchema, {
      messageId: 'failed-big',
      sender: 's1',
      to: ['a@b.example'],
      subject: 'big',
      attachments: [{ filename: 'x.bin', contentType: 'application/octet-stream', content }],
      submittedAt: timestampFromDate(new Date()),
      attempt: 1,
    });
    const stub = await packEnvelope(bus, env);
    expect(stub.bodyRef).toBe('failed-big');
    await deadLetter(bus, stub, 'given up', 'test', silent);
    expect(await bus.bodies.getBlob('failed-big')).toBeNull();
    const kept = await loadFailed(bus, 'failed-big');
    expect(kept?.env.subject).toBe('big');
    expect(kept?.env.bodyRef).toBe('');
    expect(Buffer.from(kept!.env.attachments[0]!.content).equals(Buffer.from(content))).toBe(true);
    expect((await bus.lastStatus('failed-big'))?.state).toBe(MessageState.FAILED);
    expect(await loadFailed(bus, 'never-failed')).toBeUndefined();
  });

  it('keeps an envelope again when the same message fails again (a retry that failed)', async () => {
    const env = create(EnvelopeSchema, { messageId: 'twice', sender: 's1', to: ['a@b.example'], subject: 'one', attempt: 1 });
    await keepFailed(bus, env);
    await keepFailed(bus, create(EnvelopeSchema, { ...env, subject: 'two', attempt: 2 }));
    expect((await loadFailed(bus, 'twice'))?.env.subject).toBe('two');
  });

  it('a mail stream at its limit refuses new mail and keeps what it stored (discard new)', async () => {
    const subject = bus.names.submittedSubject('s1');
    const env = (id: string) => create(EnvelopeSchema, { messageId: id, sender: 's1', attempt: 1 });
    await bus.publishEnvelope(subject, env('l1'), 'l1');
    await bus.publishEnvelope(subject, env('l2'), 'l2');
    await expect(bus.publishEnvelope(subject, env('l3'), 'l3')).rejects.toBeInstanceOf(JetStreamApiError);
    const info = await bus.jsm.streams.info(bus.names.submittedStream);
    expect(info.state.messages).toBe(2);
    expect(info.state.first_seq).toBe(1);
  });

  it('an operator-set limit applies to a stream that exists already', async () => {
    const again = await connectBus({
      servers: testNatsUrl(),
      prefix,
      name: 'dead-letters-test-2',
      topology: { limits: { submitted: { maxMessages: 5 }, bodies: { maxBytes: 64 * 1024 * 1024 } } },
    });
    await again.close();
    expect((await bus.jsm.streams.info(bus.names.submittedStream)).config.max_msgs).toBe(5);
    expect((await bus.jsm.streams.info(`OBJ_${bus.names.bodyBucket}`)).config.max_bytes).toBe(64 * 1024 * 1024);
  });

  it('indexes every message from its status events, with the summary the QUEUED event carries', async () => {
    const indexer = createMessageIndexer(bus, silent);
    await indexer.start();
    try {
      await bus.publishStatus({
        messageId: 'ix-1',
        sender: 's1',
        state: MessageState.QUEUED,
        attempt: 0,
        detail: 'accepted',
        service: 't',
        client: 'app',
        subject: 'hello',
        to: ['a@b.example'],
      });
      await bus.publishStatus({ messageId: 'ix-1', sender: 's1', state: MessageState.SENDING, attempt: 1, detail: '', service: 't' });
      await bus.publishStatus({ messageId: 'ix-1', sender: 's1', state: MessageState.FAILED, attempt: 1, detail: '550 no', service: 't' });
      await bus.publishStatus({
        messageId: 'ix-2',
        sender: 's2',
        state: MessageState.QUEUED,
        attempt: 0,
        detail: 'accepted',
        service: 't',
        client: 'other',
        subject: 'hi',
        to: [],
      });
      const until = Date.now() + 10_000;
      let rec = await readIndexRecord(bus, 'ix-1');
      while (rec?.state !== MessageState.FAILED && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
        rec = await readIndexRecord(bus, 'ix-1');
      }
      expect(rec).toMatchObject({
        messageId: 'ix-1',
        sender: 's1',
        client: 'app',
        subject: 'hello',
        to: ['a@b.example'],
        state: MessageState.FAILED,
        attempts: 1,
        lastError: '550 no',
      });
      while (!(await readIndexRecord(bus, 'ix-2')) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(
        (await readIndex(bus))
          .map((r) => r.messageId)
          .filter((id) => id.startsWith('ix-'))
          .sort(),
      ).toEqual(['ix-1', 'ix-2']);
    } finally {
      await indexer.stop(5_000);
    }
  });
});

describe('foldIndexRecord', () => {
  const ev = (state: MessageState, attempt: number, extra: Partial<{ detail: string; client: string; subject: string; to: string[] }> = {}) =>
    create(StatusEventSchema, {
      messageId: 'm',
      sender: 's',
      state,
      attempt,
      detail: extra.detail ?? '',
      client: extra.client ?? '',
      subject: extra.subject ?? '',
      to: extra.to ?? [],
    });

  it('gives the same record whatever order the events are folded in', () => {
    const events: Array<[ReturnType<typeof ev>, number]> = [
      [ev(MessageState.QUEUED, 0, { client: 'app', subject: 'hi', to: ['a@b.example'] }), 1],
      [ev(MessageState.SENDING, 1), 2],
      [ev(MessageState.RETRYING, 1, { detail: '451 later' }), 3],
      [ev(MessageState.SENDING, 2), 4],
      [ev(MessageState.FAILED, 2, { detail: '550 no' }), 5],
    ];
    const fold = (list: typeof events) => list.reduce<ReturnType<typeof foldIndexRecord> | undefined>((r, [e, seq]) => foldIndexRecord(r, e, seq), undefined)!;
    const forward = fold(events);
    const backward = fold([...events].reverse());
    expect(backward).toEqual(forward);
    expect(forward).toMatchObject({ state: MessageState.FAILED, attempts: 2, lastError: '550 no', client: 'app', subject: 'hi', statusSeq: 5n });
  });

  it('keeps a record small whatever the message', () => {
    const r = foldIndexRecord(
      undefined,
      ev(MessageState.FAILED, 1, { subject: 's'.repeat(10_000), detail: 'e'.repeat(100_000), to: Array.from({ length: 50 }, (_, i) => `r${i}@b.example`) }),
      1,
    );
    expect(r.subject.length).toBe(INDEX_BOUNDS.subjectChars);
    expect(r.lastError.length).toBe(INDEX_BOUNDS.errorChars);
    expect(r.to).toHaveLength(INDEX_BOUNDS.recipients);
  });
});
