import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { MessageState, StatusEventSchema } from '@relay/proto';
import { isSettled } from './settled.js';

const event = (state: MessageState, attempt: number) => create(StatusEventSchema, { messageId: 'm', state, attempt });

describe('isSettled', () => {
  it('takes SENT and FAILED as final (a cancelled message with a retry already queued included)', () => {
    expect(isSettled(event(MessageState.SENT, 1))).toBe(true);
    expect(isSettled(event(MessageState.FAILED, 2))).toBe(true);
  });

  it('takes BOUNCED as final: a message bounced after SENT is never sent again', () => {
    expect(isSettled(event(MessageState.BOUNCED, 1))).toBe(true);
  });

  it('leaves mail on its way alone, a message retried by hand (QUEUED again) included', () => {
    expect(isSettled(undefined)).toBe(false);
    for (const s of [MessageState.QUEUED, MessageState.SENDING, MessageState.RETRYING]) expect(isSettled(event(s, 3))).toBe(false);
  });
});
