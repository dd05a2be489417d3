import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { status } from '@grpc/grpc-js';
import { GetMessageResponseSchema, MessageState, type GetMessageResponse } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { stateName } from '../runtime.js';
import { describeSendError, waitForOutcome } from './flow.js';

const ctx = { address: '127.0.0.1:50051', sender: 'demo', apiKeySet: true };
const grpcError = (code: number, details: string) => Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details });

describe('describeSendError', () => {
  it('explains the codes a caller meets', () => {
    expect(describeSendError(grpcError(status.UNAUTHENTICATED, 'unknown api key'), ctx)).toBe(
      'UNAUTHENTICATED: the API key was refused: set RELAY_API_KEY (or --api-key) to a key from the relay config (the relay said: unknown api key)',
    );
    expect(describeSendError(grpcError(status.UNAUTHENTICATED, ''), { ...ctx, apiKeySet: false })).toMatch(/^UNAUTHENTICATED: no API key: set RELAY_API_KEY/);
    expect(describeSendError(grpcError(status.PERMISSION_DENIED, 'client "app" may not send as "demo"'), ctx)).toBe(
      'PERMISSION_DENIED: this API key may not send as "demo": a sender with that id must be defined in the relay config and listed in this client\'s senders; or pick another with --sender (the relay said: client "app" may not send as "demo")',
    );
    expect(describeSendError(grpcError(status.INVALID_ARGUMENT, 'to[0]: not an email address'), ctx)).toBe(
      'INVALID_ARGUMENT: the relay refused the message: to[0]: not an email address',
    );
    expect(describeSendError(grpcError(status.UNAVAILABLE, 'No connection established'), ctx)).toContain(
      'UNAVAILABLE: cannot reach the relay at 127.0.0.1:50051: is it running (npm run stack), is the address right?',
    );
    expect(describeSendError(grpcError(status.RESOURCE_EXHAUSTED, 'too big'), ctx)).toBe('RESOURCE_EXHAUSTED: too big');
    expect(describeSendError(new Error('plain'), ctx)).toBe('plain');
  });
});

function message(state: MessageState, extra: MessageInitShape<typeof GetMessageResponseSchema> = {}): GetMessageResponse {
  return create(GetMessageResponseSchema, { messageId: 'm1', state, ...extra });
}

describe('waitForOutcome', () => {
  it('reads until SENT, tolerating NOT_FOUND at first, reporting each new state once', async () => {
    const answers: Array<GetMessageResponse | Error> = [
      grpcError(status.NOT_FOUND, 'no message m1'),
      message(MessageState.QUEUED),
      message(MessageState.QUEUED),
      message(MessageState.SENDING),
      message(MessageState.SENT),
    ];
    const seen: string[] = [];
    const res = await waitForOutcome(
      async () => {
        const a = answers.shift();
        if (!a || a instanceof Error) throw a;
        return a;
      },
      'm1',
      { intervalMs: 1, onState: (r) => seen.push(stateName(r.state)) },
    );
    expect(res?.state).toBe(MessageState.SENT);
    expect(seen).toEqual(['QUEUED', 'SENDING', 'SENT']);
  });

  it('stops at FAILED', async () => {
    const res = await waitForOutcome(async () => message(MessageState.FAILED, { lastError: '550 5.7.30' }), 'm1', { intervalMs: 1 });
    expect(res?.lastError).toBe('550 5.7.30');
  });

  it('gives up after the timeout', async () => {
    const res = await waitForOutcome(async () => message(MessageState.RETRYING), 'm1', { intervalMs: 5, timeoutMs: 30 });
    expect(res).toBeUndefined();
  });

  it('passes other errors on', async () => {
    await expect(waitForOutcome(async () => Promise.reject(grpcError(status.UNAUTHENTICATED, 'x')), 'm1')).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
  });
});
