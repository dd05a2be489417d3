import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectBus, loadFailed, timestampFromDate, type Bus } from '@relay/bus';
import { EnvelopeSchema, MessageState } from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { createHeldSweeper, heldExpiry } from './held-expiry.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const HOUR = 3_600_000;
const ago = (ms: number) => timestampFromDate(new Date(Date.now() - ms));

describe('heldExpiry', () => {
  it('counts from the latest of submission, send_at and retry time', () => {
    const now = Date.now();
    const old = create(EnvelopeSchema, { messageId: 'a', submittedAt: ago(3 * HOUR) });
    expect(heldExpiry(old, now, 2 * HOUR, 'why')).toBe('held longer than limits.held_max_age (2h): why');
    expect(heldExpiry(create(EnvelopeSchema, { ...old, sendAt: ago(HOUR) }), now, 2 * HOUR, 'why')).toBeUndefined();
    expect(heldExpiry(create(EnvelopeSchema, { ...old, notBefore: ago(HOUR) }), now, 2 * HOUR, 'why')).toBeUndefined();
  });
});

describe('held sweeper against a real NATS JetStream', () => {
  const prefix = uniquePrefix('sweep');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'sweeper-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  it('ends FAILED held mail of an unknown sender past its max age, keeps it for a retry, and leaves younger mail', async () => {
    const held = (id: string, submittedAgoMs: number) =>
      bus.publishEnvelope(
        bus.names.heldSubject('ghost'),
        create(EnvelopeSchema, { messageId: id, sender: 'ghost', to: ['a@b.example'], subject: id, attempt: 1, submittedAt: ago(submittedAgoMs) }),
        `${id}.1.held`,
      );
    await held('old', 2 * HOUR);
    await held('young', 1_000);
    await held('old-too', 3 * HOUR);
    const sweeper = createHeldSweeper({ bus, known: () => false, maxAgeMs: () => HOUR, logger });
    expect(await sweeper.sweep()).toBe(2);
    for (const id of ['old', 'old-too']) {
      const last = await bus.lastStatus(id);
      expect(last?.state).toBe(MessageState.FAILED);
      expect(last?.detail).toBe('held longer than limits.held_max_age (1h): its sender is not configured');
      expect((await loadFailed(bus, id))?.env.subject).toBe(id);
    }
    const info = await bus.jsm.streams.info(bus.names.heldStream);
    expect(info.state.messages).toBe(1);
    expect(await bus.lastStatus('young')).toBeUndefined();
    // Nothing left to expire: a second sweep changes nothing.
    expect(await sweeper.sweep()).toBe(0);
    await sweeper.stop();
  });

  it('does not make mail FAILED that was sent meanwhile, and keeps a cancelled one for a retry', async () => {
    const held = (id: string) =>
      bus.publishEnvelope(
        bus.names.heldSubject('ghost'),
        create(EnvelopeSchema, { messageId: id, sender: 'ghost', to: ['a@b.example'], subject: id, attempt: 1, submittedAt: ago(2 * HOUR) }),
        `${id}.1.held`,
      );
    const before = (await bus.jsm.streams.info(bus.names.heldStream)).state.messages;
    await held('sent-meanwhile');
    await held('cancelled');
    await bus.publishStatus({ messageId: 'sent-meanwhile', sender: 'ghost', state: MessageState.SENT, attempt: 1, detail: '250 ok', service: 'test' });
    await bus.publishStatus({ messageId: 'cancelled', sender: 'ghost', state: MessageState.FAILED, attempt: 1, detail: 'cancelled by ops', service: 'test' });
    const sweeper = createHeldSweeper({ bus, known: () => false, maxAgeMs: () => HOUR, logger });
    expect(await sweeper.sweep()).toBe(0);
    expect((await bus.lastStatus('sent-meanwhile'))?.state).toBe(MessageState.SENT);
    expect((await bus.lastStatus('cancelled'))?.detail).toBe('cancelled by ops');
    expect((await loadFailed(bus, 'cancelled'))?.env.subject).toBe('cancelled');
    expect((await bus.jsm.streams.info(bus.names.heldStream)).state.messages).toBe(before);
    await sweeper.stop();
  });
});
