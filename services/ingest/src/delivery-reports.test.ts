import { readFileSync } from 'node:fs';
import { Metadata } from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { connectBus, createMessageIndexer, readIndexRecord, recordDeliveryReport, type Bus } from '@relay/bus';
import type { ClientConfig } from '@relay/config';
import { parseDeliveryReport } from '@relay/mail';
import { DeliveryOutcome, EnvelopeSchema, ListMessagesRequestSchema, MessageState } from '@relay/proto';
import { dropBus, eventually, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminMessageHandlers, indexSummary } from './admin-messages.js';
import { foldHistory } from './history.js';

const silent = { warn() {}, info() {}, debug() {} };
const report = async (name: string) => (await parseDeliveryReport(readFileSync(new URL(`../../../libs/mail/test-fixtures/ndr/${name}.eml`, import.meta.url))))!;
const ops = { name: 'ops', admin: true, senders: [] } as unknown as ClientConfig;

describe('delivery reports recorded on their messages (real NATS JetStream)', () => {
  const prefix = uniquePrefix('ndr');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'delivery-reports-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  /** A message as ingest and a sender leave it: QUEUED with its recipients, then up to `until`. */
  async function sent(messageId: string, to: string[], until = MessageState.SENT) {
    const base = { messageId, sender: 'registrar', service: 'test' };
    await bus.publishStatus({
      ...base,
      state: MessageState.QUEUED,
      attempt: 0,
      detail: 'accepted',
      client: 'app',
      subject: 'hi',
      to,
      recipientCount: to.length,
    });
    if (until === MessageState.QUEUED) return;
    await bus.publishStatus({ ...base, state: MessageState.SENDING, attempt: 1, detail: '' });
    await bus.publishStatus({ ...base, state: MessageState.SENT, attempt: 1, detail: '250 2.0.0 OK' });
  }
  const getMessage = async (id: string) => foldHistory(id, await bus.history(id));

  it('a bounce of one of two recipients leaves the message SENT with the outcome listed; the second makes it BOUNCED', async () => {
    const postfix = await report('postfix-5.1.1');
    const id = postfix.relayMessageId!;
    await sent(id, ['nobody@students.example.org', 'dean@students.example.org']);

    expect(await recordDeliveryReport(bus, postfix, 'test')).toEqual({ recorded: true, messageId: id, state: MessageState.SENT });
    let msg = await getMessage(id);
    expect(msg.state).toBe(MessageState.SENT);
    expect(msg.recipientOutcomes.map((o) => [o.recipient, o.outcome, o.status, o.diagnostic])).toEqual([
      [
        'nobody@students.example.org',
        DeliveryOutcome.BOUNCED,
        '5.1.1',
        '550 5.1.1 <nobody@students.example.org>: Recipient address rejected: User unknown in virtual mailbox table',
      ],
    ]);
    expect(msg.recipientOutcomes[0]!.at).toBeDefined();
    expect(msg.history.at(-1)!.detail).toBe(
      'delivery report: bounced: nobody@students.example.org (550 5.1.1 <nobody@students.example.org>: Recipient address rejected: User unknown in virtual mailbox table)',
    );

    // The same report read again (same Message-ID) is stored once.
    const events = (await bus.history(id)).length;
    await recordDeliveryReport(bus, postfix, 'test');
    expect((await bus.history(id)).length).toBe(events);

    const second = {
      relayMessageId: id,
      reportMessageId: '<other@mail.example.edu>',
      recipients: [{ recipient: 'Dean@students.example.org', outcome: 'bounced' as const, status: '5.2.1', diagnostic: '550 5.2.1 disabled' }],
    };
    expect(await recordDeliveryReport(bus, second, 'test')).toEqual({ recorded: true, messageId: id, state: MessageState.BOUNCED });
    msg = await getMessage(id);
    expect(msg.state).toBe(MessageState.BOUNCED);
    expect(msg.recipientOutcomes.map((o) => [o.recipient, o.status])).toEqual([
      ['nobody@students.example.org', '5.1.1'],
      ['Dean@students.example.org', '5.2.1'],
    ]);
    expect(msg.lastError).toBe('delivery report: bounced: Dean@students.example.org (550 5.2.1 disabled)');

    // Once BOUNCED it takes no more reports.
    expect(await recordDeliveryReport(bus, second, 'test')).toEqual({ recorded: false, messageId: id, reason: 'the message is BOUNCED, not SENT' });
  });

  it('a delay notice is listed as delayed and changes nothing else', async () => {
    const delayed = await report('postfix-delayed-4.4.1');
    await sent(delayed.relayMessageId!, ['dean@slow.example.net']);
    expect(await recordDeliveryReport(bus, delayed, 'test')).toMatchObject({ recorded: true, state: MessageState.SENT });
    const msg = await getMessage(delayed.relayMessageId!);
    expect(msg.recipientOutcomes.map((o) => [o.recipient, o.outcome, o.status])).toEqual([['dean@slow.example.net', DeliveryOutcome.DELAYED, '4.4.1']]);
  });

  it('ignores a report about an unknown message, one not yet SENT, and one naming no message', async () => {
    const gmail = await report('gmail-5.1.1');
    expect(await recordDeliveryReport(bus, gmail, 'test')).toEqual({ recorded: false, messageId: gmail.relayMessageId, reason: 'no such message' });
    expect(await bus.history(gmail.relayMessageId!)).toEqual([]);

    const exchange = await report('exchange-online-5.1.10');
    await sent(exchange.relayMessageId!, ['gone@fabrikam.com'], MessageState.QUEUED);
    expect(await recordDeliveryReport(bus, exchange, 'test')).toMatchObject({ recorded: false, reason: 'the message is QUEUED, not SENT' });
    expect((await getMessage(exchange.relayMessageId!)).recipientOutcomes).toEqual([]);

    expect(await recordDeliveryReport(bus, { recipients: exchange.recipients }, 'test')).toEqual({
      recorded: false,
      reason: 'the report names no message of this relay',
    });
  });

  it('ListMessages finds a BOUNCED message by its state', async () => {
    const indexer = createMessageIndexer(bus, silent, { lingerMs: 10 });
    await indexer.start();
    try {
      const exchange = await report('exchange-online-text');
      const id = exchange.relayMessageId!;
      await sent(id, ['gone@fabrikam.com', 'full@fabrikam.com']);
      expect(await recordDeliveryReport(bus, exchange, 'test')).toMatchObject({ recorded: true, state: MessageState.BOUNCED });
      await eventually(async () => ((await readIndexRecord(bus, id))?.state === MessageState.BOUNCED ? true : undefined));
      await eventually(async () => ((await readIndexRecord(bus, '0193a5b2-9999-7d10-8a2b-3c4d5e6f7a81'))?.state === MessageState.SENT ? true : undefined));

      const handlers = createAdminMessageHandlers({ bus, auth: { authenticate: () => ops, authorizeSender() {} } });
      const list = await handlers.listMessages({ metadata: new Metadata(), request: create(ListMessagesRequestSchema, { state: MessageState.BOUNCED }) });
      // This one and the first test's; not the SENT one with a delay, nor the QUEUED one.
      expect(list.messages.map((m) => [m.messageId, m.state])).toEqual([
        [id, MessageState.BOUNCED],
        ['0193a5b2-7c4e-7d10-8a2b-3c4d5e6f7a80', MessageState.BOUNCED],
      ]);
      expect(list.messages[0]!.lastError).toContain('bounced: gone@fabrikam.com (550 5.1.10');
    } finally {
      await indexer.stop(1_000);
    }
  });
});

describe('indexSummary', () => {
  it('counts every recipient of the envelope on the QUEUED event, beyond the few it lists', () => {
    const to = Array.from({ length: 7 }, (_, i) => `s${i}@students.example.org`);
    const summary = indexSummary(create(EnvelopeSchema, { client: 'app', subject: 'hi', to, recipientCount: 7 }));
    expect(summary.to).toHaveLength(5);
    expect(summary.recipientCount).toBe(7);
  });
});
