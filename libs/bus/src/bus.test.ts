import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvelopeSchema, MessageState } from '@relay/proto';
import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { connectBus, decodeEnvelope, timestampFromDate, type Bus } from './bus.js';
import { packEnvelope, unpackEnvelope, deleteBody } from './bodies.js';
import { MAX_STATUS_REMEDY_BYTES } from './status-detail.js';

describe('bus against a real NATS JetStream', () => {
  const prefix = uniquePrefix('bus');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'bus-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  it('creates its streams idempotently when several services start at once', async () => {
    const more = await Promise.all([1, 2].map(() => connectBus({ servers: testNatsUrl(), prefix, name: 'bus-test-2' })));
    await Promise.all(more.map((b) => b.close()));
    const info = await bus.jsm.streams.info(bus.names.submittedStream);
    expect(info.config.subjects).toEqual([`${prefix}.submitted.>`]);
  });

  it('returns a message history in order, and nothing for an unknown id', async () => {
    const id = 'm-history';
    for (const [state, attempt] of [
      [MessageState.QUEUED, 0],
      [MessageState.SENDING, 1],
      [MessageState.RETRYING, 1],
      [MessageState.SENDING, 2],
      [MessageState.SENT, 2],
    ] as const) {
      await bus.publishStatus({ messageId: id, sender: 's1', state, attempt, detail: `d${attempt}`, service: 'test' });
    }
    await bus.publishStatus({ messageId: 'other', sender: 's1', state: MessageState.QUEUED, attempt: 0, detail: '', service: 'test' });
    const h = await bus.history(id);
    expect(h.map((e) => e.state)).toEqual([MessageState.QUEUED, MessageState.SENDING, MessageState.RETRYING, MessageState.SENDING, MessageState.SENT]);
    expect(await bus.history('unknown')).toEqual([]);
    expect((await bus.lastStatus(id))?.state).toBe(MessageState.SENT);
    expect(await bus.lastStatus('unknown')).toBeUndefined();
  });

  it("bounds a status event's remedy, like its detail", async () => {
    await bus.publishStatus({
      messageId: 'm-remedy',
      sender: 's1',
      state: MessageState.FAILED,
      attempt: 1,
      detail: '550 no',
      remedy: 'fix '.repeat(1_000),
      service: 'test',
    });
    const ev = await bus.lastStatus('m-remedy');
    expect(Buffer.byteLength(ev!.remedy)).toBeLessThanOrEqual(MAX_STATUS_REMEDY_BYTES);
    expect(ev!.remedy).toMatch(/^fix fix .* \(4000 bytes in all, cut\)$/);
  });

  it('dedupes a republished envelope by its message id', async () => {
    const env = create(EnvelopeSchema, { messageId: 'dup', sender: 's1', to: ['a@b.example'], attempt: 1 });
    const a = await bus.publishEnvelope(bus.names.submittedSubject('s1'), env, 'dup.1');
    const b = await bus.publishEnvelope(bus.names.submittedSubject('s1'), env, 'dup.1');
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
  });

  it('publishes a packed envelope as it is, and a changed one as changed', async () => {
    const subject = bus.names.submittedSubject('packed');
    const env = create(EnvelopeSchema, { messageId: 'packed', sender: 'packed', to: ['a@b.example'], subject: 'first', attempt: 1 });
    expect(await packEnvelope(bus, env)).toBe(env);
    const first = await bus.publishEnvelope(subject, env, 'packed.1');
    env.subject = 'second';
    const second = await bus.publishEnvelope(subject, env, 'packed.2');
    const read = async (seq: number) => decodeEnvelope((await bus.jsm.streams.getMessage(bus.names.submittedStream, { seq }))!.data);
    expect((await read(first.seq)).subject).toBe('first');
    expect((await read(second.seq)).subject).toBe('second');
  });

  it('carries a body larger than one broker message by reference, intact', async () => {
    const content = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7) % 251);
    const env = create(EnvelopeSchema, {
      messageId: 'big',
      sender: 's1',
      to: ['a@b.example'],
      subject: 'big one',
      attachments: [{ filename: 'x.bin', contentType: 'application/octet-stream', content }],
      submittedAt: timestampFromDate(new Date()),
      attempt: 1,
    });
    const stub = await packEnvelope(bus, env);
    expect(stub.bodyRef).toBe('big');
    expect(stub.attachments).toHaveLength(0);
    const ack = await bus.publishEnvelope(bus.names.submittedSubject('s1'), stub, 'big.1');
    const stored = await bus.jsm.streams.getMessage(bus.names.submittedStream, { seq: ack.seq });
    const full = await unpackEnvelope(bus, decodeEnvelope(stored!.data));
    expect(full.subject).toBe('big one');
    expect(Buffer.from(full.attachments[0]!.content).equals(Buffer.from(content))).toBe(true);
    await deleteBody(bus, full);
    expect(await bus.bodies.getBlob('big')).toBeNull();
    const small = create(EnvelopeSchema, { messageId: 'small', sender: 's1', subject: 'hi' });
    expect(await packEnvelope(bus, small)).toBe(small);
  });
});
