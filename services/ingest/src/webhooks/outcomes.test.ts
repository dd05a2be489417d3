import { create } from '@bufbuild/protobuf';
import { DeliveryOutcome, MessageState, RecipientOutcomeSchema, StatusEventSchema } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { webhookJob } from './events.js';

describe('webhook events from delivery reports', () => {
  it('carry the outcome of each recipient the report names; other events carry none', () => {
    const outcomes = [
      create(RecipientOutcomeSchema, { recipient: 'a@x.example', outcome: DeliveryOutcome.BOUNCED, status: '5.1.1', diagnostic: '550 5.1.1 unknown' }),
      create(RecipientOutcomeSchema, { recipient: 'b@x.example', outcome: DeliveryOutcome.DELAYED, status: '4.4.1', diagnostic: 'timed out' }),
    ];
    const ev = create(StatusEventSchema, { messageId: 'm-1', sender: 's', state: MessageState.BOUNCED, attempt: 1, detail: 'delivery report: ...', outcomes });
    const body = JSON.parse(webhookJob(ev, 'sis', 7)!.body);
    expect(body.type).toBe('message.bounced');
    expect(body.data.last_error).toBe('delivery report: ...');
    expect(body.data.recipient_outcomes).toEqual([
      { recipient: 'a@x.example', outcome: 'bounced', status: '5.1.1', diagnostic: '550 5.1.1 unknown' },
      { recipient: 'b@x.example', outcome: 'delayed', status: '4.4.1', diagnostic: 'timed out' },
    ]);
    const sent = JSON.parse(webhookJob(create(StatusEventSchema, { messageId: 'm-1', state: MessageState.SENT }), 'sis', 8)!.body);
    expect(sent.data).not.toHaveProperty('recipient_outcomes');
  });
});
