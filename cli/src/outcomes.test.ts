import { DeliveryOutcome, MessageState } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { at, relay, relayCli, useFakeRelay } from './testing/fixture.js';

useFakeRelay();

describe('relay messages get', () => {
  it("lists each recipient's outcome from delivery reports", async () => {
    relay.on('getMessage', (req: { messageId: string }) => ({
      messageId: req.messageId,
      state: MessageState.BOUNCED,
      attempts: 1,
      sender: 'registrar',
      lastError: 'delivery report: bounced: gone@fabrikam.example (550 5.1.10 RESOLVER.ADR.RecipientNotFound)',
      recipientOutcomes: [
        { recipient: 'gone@fabrikam.example', outcome: DeliveryOutcome.BOUNCED, status: '5.1.10', diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound', at },
      ],
      history: [{ state: MessageState.SENT, at, attempt: 1, detail: '250 2.0.0 OK' }],
    }));
    const res = await relayCli(['messages', 'get', 'm-1']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('BOUNCED (1 attempt)');
    expect(res.stdout).toContain('Recipients:\n  2030-01-02 03:04:05Z  BOUNCED   gone@fabrikam.example  550 5.1.10 RESOLVER.ADR.RecipientNotFound\n');
  });
});
