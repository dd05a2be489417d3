import { describe, expect, it } from 'vitest';
import { outcomeRows } from './outcomes';

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
