import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageState } from '@relay/proto';
import { dropBus, eventually, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { connectBus, type Bus } from './bus.js';
import { createMessageIndexer, readIndexRecord } from './message-index.js';

const silent = { warn() {}, info() {}, debug() {} };

describe('message indexer against a real NATS JetStream', () => {
  const prefix = uniquePrefix('index');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'message-index-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  /** Writes to the index bucket so far: its stream's last sequence. */
  const writes = async () => (await bus.jsm.streams.info(`KV_${bus.names.messagesBucket}`)).state.last_seq;
  const event = (messageId: string, state: MessageState, attempt: number, extra: object = {}) =>
    bus.publishStatus({ messageId, sender: 's1', state, attempt, detail: state === MessageState.RETRYING ? '451 later' : '', service: 't', ...extra });

  it("writes a message's events that come together as one record update", async () => {
    // A long linger: only the settling event (SENT) makes the write.
    const indexer = createMessageIndexer(bus, silent, { lingerMs: 60_000 });
    await indexer.start();
    try {
      const before = await writes();
      await event('one-write', MessageState.QUEUED, 0, { client: 'app', subject: 'hello', to: ['a@b.example'] });
      await event('one-write', MessageState.SENDING, 1);
      await event('one-write', MessageState.SENT, 1);
      const rec = await eventually(async () => {
        const r = await readIndexRecord(bus, 'one-write');
        return r?.state === MessageState.SENT ? r : undefined;
      });
      expect(rec).toMatchObject({ client: 'app', subject: 'hello', to: ['a@b.example'], attempts: 1 });
      expect((await writes()) - before).toBe(1);
    } finally {
      await indexer.stop(5_000);
    }
  });

  it('writes an event that no other follows once its linger is over, and folds later ones on it', async () => {
    const indexer = createMessageIndexer(bus, silent, { lingerMs: 50 });
    await indexer.start();
    try {
      await event('alone', MessageState.QUEUED, 0, { subject: 'waits' });
      await eventually(async () => (await readIndexRecord(bus, 'alone'))?.state === MessageState.QUEUED || undefined);
      await event('alone', MessageState.SENDING, 1);
      await event('alone', MessageState.RETRYING, 1);
      const rec = await eventually(async () => {
        const r = await readIndexRecord(bus, 'alone');
        return r?.state === MessageState.RETRYING ? r : undefined;
      });
      expect(rec).toMatchObject({ subject: 'waits', attempts: 1, lastError: '451 later' });
    } finally {
      await indexer.stop(5_000);
    }
  });

  it('writes what waits for more events when it stops', async () => {
    const indexer = createMessageIndexer(bus, silent, { lingerMs: 600_000 });
    await indexer.start();
    await event('at-stop', MessageState.QUEUED, 0, { subject: 'stopping' });
    // The event has reached the indexer (delivered, not yet acked) before it stops.
    await eventually(async () =>
      (await bus.jsm.consumers.info(bus.names.statusStream, bus.names.messagesIndexConsumer)).num_ack_pending > 0 ? true : undefined,
    );
    expect(await readIndexRecord(bus, 'at-stop')).toBeUndefined();
    await indexer.stop(5_000);
    expect(await readIndexRecord(bus, 'at-stop')).toMatchObject({ subject: 'stopping', state: MessageState.QUEUED });
  });

  it('updates a record another replica wrote, whatever this one remembers', async () => {
    const a = createMessageIndexer(bus, silent, { lingerMs: 10 });
    await a.start();
    try {
      await event('two', MessageState.QUEUED, 0, { subject: 'first' });
      await eventually(async () => (await readIndexRecord(bus, 'two')) ?? undefined);
      // A retry by hand publishes QUEUED again: the record exists, so it is read and updated.
      await event('two', MessageState.QUEUED, 0, { subject: 'second' });
      await eventually(async () => ((await readIndexRecord(bus, 'two'))?.subject === 'second' ? true : undefined));
    } finally {
      await a.stop(5_000);
    }
  });
});
