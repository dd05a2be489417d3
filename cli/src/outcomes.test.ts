import { DeliveryOutcome, MessageState, SentCopyState } from '@relay/proto';
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

  it('shows where the copy to the Sent folder stands, with the last error while it is retried', async () => {
    const copies = [
      { state: SentCopyState.COPIED, folder: 'Sent Items', attempts: 2, lastError: '', at },
      { state: SentCopyState.RETRYING, folder: '', attempts: 3, lastError: 'connect ECONNREFUSED 127.0.0.1:993', at },
      { state: SentCopyState.GAVE_UP, folder: '', attempts: 40, lastError: 'Command failed: Authentication failed.', at },
    ];
    let next = 0;
    relay.on('getMessage', (req: { messageId: string }) => ({
      messageId: req.messageId,
      state: MessageState.SENT,
      attempts: 1,
      sender: 'registrar',
      sentCopy: copies[next++],
      history: [{ state: MessageState.SENT, at, attempt: 1, detail: '250 2.0.0 OK' }],
    }));
    const copied = await relayCli(['messages', 'show', 'm-2']);
    expect(copied.code).toBe(0);
    expect(copied.stdout).toContain('Sent copy:  copied to Sent Items (2 attempts, 2030-01-02 03:04:05Z)\n');
    expect((await relayCli(['messages', 'show', 'm-2'])).stdout).toContain(
      'Sent copy:  retrying (3 attempts, 2030-01-02 03:04:05Z): connect ECONNREFUSED 127.0.0.1:993\n',
    );
    expect((await relayCli(['messages', 'get', 'm-2'])).stdout).toContain(
      'Sent copy:  gave up (40 attempts, 2030-01-02 03:04:05Z): Command failed: Authentication failed.\n',
    );
  });

  it('says nothing of a Sent copy for a sender that makes none', async () => {
    relay.on('getMessage', (req: { messageId: string }) => ({
      messageId: req.messageId,
      state: MessageState.SENT,
      attempts: 1,
      sender: 'registrar',
      history: [{ state: MessageState.SENT, at, attempt: 1, detail: '250 2.0.0 OK' }],
    }));
    expect((await relayCli(['messages', 'show', 'm-3'])).stdout).not.toContain('Sent copy');
  });
});
