import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { MessageState, StatusEventSchema } from '@relay/proto';
import { isSettled } from './settled.js';

const event = (state: MessageState, attempt: number) => create(StatusEventSchema, { messageId: 'm', state, attempt });

describe('isSettled', () => {
  it('takes SENT as final for every attempt', () => {
    expect(isSettled(event(MessageState.SENT, 1), 1)).toBe(true);
    expect(isSettled(event(MessageState.SENT, 1), 3)).toBe(true);
  });

  it('takes FAILED as final for its attempt and earlier ones, not for a later attempt (a retry by hand)', () => {
    expect(isSettled(event(MessageState.FAILED, 2), 1)).toBe(true);
    expect(isSettled(event(MessageState.FAILED, 2), 2)).toBe(true);
    expect(isSettled(event(MessageState.FAILED, 2), 3)).toBe(false);
  });

  it('leaves mail on its way alone', () => {
    expect(isSettled(undefined, 1)).toBe(false);
    for (const s of [MessageState.QUEUED, MessageState.SENDING, MessageState.RETRYING]) expect(isSettled(event(s, 1), 1)).toBe(false);
  });
});
