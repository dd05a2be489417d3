import { describe, expect, it } from 'vitest';
import { outcomeRows, sentCopySummary } from './outcomes';

describe('outcomeRows', () => {
  it("shows each recipient's outcome with the server's reply, or the status code when there is no reply", () => {
    expect(
      outcomeRows([
        {
          recipient: 'gone@fabrikam.example',
          outcome: 'DELIVERY_OUTCOME_BOUNCED',
          status: '5.1.10',
          diagnostic: '550 5.1.10 RecipientNotFound',
          at: '2026-12-05T10:00:00Z',
        },
        { recipient: 'slow@fabrikam.example', outcome: 'DELIVERY_OUTCOME_DELAYED', status: '4.4.1' },
      ]),
    ).toEqual([
      { recipient: 'gone@fabrikam.example', outcome: 'bounced', reply: '550 5.1.10 RecipientNotFound', at: '2026-12-05T10:00:00Z' },
      { recipient: 'slow@fabrikam.example', outcome: 'delayed', reply: '4.4.1', at: undefined },
    ]);
    expect(outcomeRows(undefined)).toEqual([]);
  });
});

describe('sentCopySummary', () => {
  it('says where the copy to the Sent folder stands, with the last error until it is copied', () => {
    expect(sentCopySummary({ state: 'SENT_COPY_STATE_COPIED', folder: 'Sent Items', attempts: 1, at: '2026-12-05T10:00:00Z' })).toEqual({
      text: 'Copied to Sent Items (1 attempt)',
      error: '',
      at: '2026-12-05T10:00:00Z',
    });
    expect(sentCopySummary({ state: 'SENT_COPY_STATE_RETRYING', attempts: 3, lastError: 'connect ECONNREFUSED 127.0.0.1:993' })).toEqual({
      text: 'Not copied yet, trying again (3 attempts)',
      error: 'connect ECONNREFUSED 127.0.0.1:993',
      at: undefined,
    });
    expect(sentCopySummary({ state: 'SENT_COPY_STATE_GAVE_UP', attempts: 40, lastError: 'Authentication failed.' })?.text).toBe(
      'Gave up: no copy (40 attempts)',
    );
    expect(sentCopySummary(undefined)).toBeUndefined();
  });
});
