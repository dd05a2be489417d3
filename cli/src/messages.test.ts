import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { type ListMessagesRequest, MessageState, type RetryMessagesRequest, type WatchMessagesRequest } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { at, relay, relayCli, useFakeRelay } from './testing/fixture.js';

useFakeRelay();

describe('relay messages', () => {
  const summary = (i: number, state = MessageState.FAILED) => ({
    messageId: `m-${i}`,
    state,
    sender: 'no-reply',
    client: 'billing-app',
    subject: `Invoice ${i}`,
    to: [`student${i}@campus.example`],
    attempts: 3,
    lastError: '550 5.7.30 basic auth retired',
    updatedAt: at,
  });

  it('lists with filters, pages up to --limit', async () => {
    relay.on('listMessages', (req: ListMessagesRequest) =>
      req.pageToken === '' ? { messages: [summary(1), summary(2)], nextPageToken: 'p2' } : { messages: [summary(3)], nextPageToken: 'p3' },
    );
    const res = await relayCli(['messages', 'list', '--state', 'failed', '--sender', 'no-reply', '--subject', 'Invoice', '--since', '24h', '--limit', '3']);
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n')[0]).toMatch(/^ID\s+STATE\s+SENDER\s+TO\s+SUBJECT\s+ATTEMPTS\s+UPDATED$/);
    expect(res.stdout).toMatch(/m-3\s+FAILED\s+no-reply\s+student3@campus\.example\s+Invoice 3\s+3\s+2030-01-02 03:04:05Z/);
    expect(res.stderr).toContain('first 3; more match');
    const req = relay.calls[0]?.request as ListMessagesRequest;
    expect(req).toMatchObject({ state: MessageState.FAILED, sender: 'no-reply', subject: 'Invoice', pageSize: 3 });
    const since = Number(req.since?.seconds) * 1000;
    expect(Math.abs(since - (Date.now() - 86_400_000))).toBeLessThan(60_000);
  });

  it('shows a message history as a timeline, with remedies and the trace id', async () => {
    relay.on('getMessage', (req: { messageId: string }) => ({
      messageId: req.messageId,
      state: MessageState.SENT,
      attempts: 2,
      sender: 'no-reply',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      history: [
        { state: MessageState.QUEUED, at, detail: 'accepted' },
        {
          state: MessageState.RETRYING,
          at: timestampFromDate(new Date('2030-01-02T03:04:35Z')),
          attempt: 1,
          detail: '421 4.7.0 try again',
          remedy: 'The server is busy; the relay tries again.',
        },
        { state: MessageState.SENT, at: timestampFromDate(new Date('2030-01-02T03:06:05Z')), attempt: 2, detail: '250 2.0.0 OK' },
      ],
    }));
    const res = await relayCli(['messages', 'get', 'm-9']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('SENT (2 attempts)');
    expect(res.stdout).toContain('Trace:      4bf92f3577b34da6a3ce929d0e0e4736');
    expect(res.stdout).toContain(
      '2030-01-02 03:04:35Z  +30s    RETRYING attempt 1  421 4.7.0 try again\n                                                    What to do: The server is busy; the relay tries again.\n',
    );
    expect(res.stdout).toContain('2030-01-02 03:06:05Z  +2m     SENT     attempt 2  250 2.0.0 OK');
  });

  it('retries by filter only with --yes, in batches, and prints a summary', async () => {
    const all = Array.from({ length: 150 }, (_, i) => summary(i));
    relay.on('listMessages', (req: ListMessagesRequest) =>
      req.pageToken === '' ? { messages: all.slice(0, 100), nextPageToken: 'p2' } : { messages: all.slice(100), nextPageToken: '' },
    );
    relay.on('retryMessages', (req: RetryMessagesRequest) => ({ count: req.messageIds.filter((id) => id !== 'm-7').length }));

    const dry = await relayCli(['messages', 'retry', '--state', 'failed', '--sender', 'no-reply', '--subject', 'invoice']);
    expect(dry.code).toBe(2);
    expect(dry.stderr).toBe('150 messages match --state failed --sender no-reply --subject invoice; add --yes to retry them\n');
    expect(relay.calls[0]?.request).toMatchObject({ subject: 'invoice' });
    expect(relay.calls.some((c) => c.method === 'retryMessages')).toBe(false);

    relay.calls.length = 0;
    const res = await relayCli(['messages', 'retry', '--state', 'failed', '--sender', 'no-reply', '--yes']);
    expect(res).toMatchObject({ code: 0, stdout: 'retried 149 of 150 messages (1 not FAILED or unknown)\n' });
    const batches = relay.calls.filter((c) => c.method === 'retryMessages').map((c) => (c.request as RetryMessagesRequest).messageIds.length);
    expect(batches).toEqual([100, 50]);
    expect(relay.calls[0]?.request).toMatchObject({ state: MessageState.FAILED, sender: 'no-reply' });

    relay.calls.length = 0;
    const json = await relayCli(['messages', 'cancel', 'm-1', 'm-2', '-o', 'json']);
    expect(json.code).toBe(1); // no answer set for cancelMessages: the fake's UNIMPLEMENTED
    expect(json.stderr).toContain('UNIMPLEMENTED');
  });

  it('needs ids or filters, not neither', async () => {
    const res = await relayCli(['messages', 'cancel']);
    expect(res).toMatchObject({ code: 2, stderr: 'relay: no messages selected: give message ids, or filters such as --state failed --sender ID\n' });
  });
});

describe('relay tail and queue', () => {
  it('prints one line per streamed event and ends with the stream', async () => {
    relay.on('watchMessages', () => [
      { messageId: 'm-1', state: MessageState.SENDING, sender: 'no-reply', client: 'billing-app', at, attempt: 1 },
      { messageId: 'm-1', state: MessageState.SENT, sender: 'no-reply', client: 'billing-app', at, attempt: 1, detail: '250 2.0.0 OK' },
    ]);
    const res = await relayCli(['tail', '--sender', 'no-reply', '--state', 'sent']);
    expect(res.code).toBe(0);
    expect(res.stdout.trimEnd().split('\n')).toEqual([
      '2030-01-02T03:04:05.000Z  m-1  SENDING    no-reply  billing-app  attempt 1',
      '2030-01-02T03:04:05.000Z  m-1  SENT       no-reply  billing-app  attempt 1  250 2.0.0 OK',
    ]);
    expect(relay.calls[0]?.request as WatchMessagesRequest).toMatchObject({ sender: 'no-reply', state: MessageState.SENT });
    const json = await relayCli(['tail', '-o', 'json']);
    expect(
      json.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l).state),
    ).toEqual(['MESSAGE_STATE_SENDING', 'MESSAGE_STATE_SENT']);
  });

  it('shows queue statistics per sender', async () => {
    relay.on('getQueueStats', () => ({
      senders: [
        {
          sender: 'no-reply',
          queued: 12n,
          held: 10n,
          sending: 2n,
          retrying: 1n,
          failed24h: 3n,
          oldestAgeSeconds: 90n,
          recipientsToday: 420n,
          dailyRecipientCap: 10_000n,
        },
      ],
    }));
    const res = await relayCli(['queue']);
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n')[0]).toMatch(/^SENDER\s+QUEUED\s+HELD\s+SENDING\s+RETRYING\s+FAILED-24H\s+OLDEST\s+RECIPIENTS-TODAY\s+NEXT-RELEASE$/);
    expect(res.stdout).toMatch(/no-reply\s+12\s+10\s+2\s+1\s+3\s+1m30s\s+420\/10000\s+-/);
  });
});
