import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { JetStreamApiError } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { ListMessagesRequestSchema, MessageRecordSchema, MessageState } from '@relay/proto';
import { ErrorCode, isRelayError } from '@relay/core';
import { matcher, SUBJECT_FILTER_MAX } from './admin-messages.js';
import { isStoreFull } from './store-limits.js';

const at = (iso: string) => timestampFromDate(new Date(iso));
const record = create(MessageRecordSchema, {
  messageId: 'm1',
  state: MessageState.FAILED,
  sender: 'billing',
  client: 'app',
  to: ['Ada Lovelace <Ada@Students.Campus.Example>', 'bob@students.campus.example'],
  subject: 'Your Library Loan is overdue',
  updatedAt: at('2026-12-05T10:00:00Z'),
});
const test = (init: Parameters<typeof create<typeof ListMessagesRequestSchema>>[1]) => matcher(create(ListMessagesRequestSchema, init))(record);

describe('matcher', () => {
  it('matches on each filter, and on none', () => {
    expect(test({})).toBe(true);
    expect(test({ state: MessageState.FAILED, sender: 'billing', client: 'app' })).toBe(true);
    expect(test({ state: MessageState.SENT })).toBe(false);
    expect(test({ sender: 'other' })).toBe(false);
    expect(test({ client: 'other' })).toBe(false);
  });

  it('finds a recipient by address, in any case, with or without a display name', () => {
    expect(test({ recipient: 'ada@students.campus.example' })).toBe(true);
    expect(test({ recipient: 'BOB@students.campus.example' })).toBe(true);
    expect(test({ recipient: 'carol@students.campus.example' })).toBe(false);
  });

  it('finds a part of the subject in any case, and refuses a filter longer than the index keeps', () => {
    expect(test({ subject: 'library loan' })).toBe(true);
    expect(test({ subject: '  OVERDUE ' })).toBe(true);
    expect(test({ subject: 'Your Library Loan is overdue' })).toBe(true);
    expect(test({ subject: 'exam results' })).toBe(false);
    expect(test({ subject: 'x'.repeat(SUBJECT_FILTER_MAX) })).toBe(false);
    let err: unknown;
    try {
      test({ subject: 'x'.repeat(SUBJECT_FILTER_MAX + 1) });
    } catch (e) {
      err = e;
    }
    expect(isRelayError(err) && err.code).toBe(ErrorCode.InvalidArgument);
    expect((err as Error).message).toBe(`subject: at most ${SUBJECT_FILTER_MAX} characters`);
  });

  it('takes since inclusive and until exclusive, on the time of the latest state change', () => {
    expect(test({ since: at('2026-12-05T10:00:00Z') })).toBe(true);
    expect(test({ since: at('2026-12-05T10:00:01Z') })).toBe(false);
    expect(test({ until: at('2026-12-05T10:00:00Z') })).toBe(false);
    expect(test({ until: at('2026-12-05T10:00:01Z') })).toBe(true);
  });
});

describe('isStoreFull', () => {
  it("knows JetStream's answer for a full stream, also as the cause of another error", () => {
    const full = new JetStreamApiError({ code: 503, err_code: 10077, description: 'maximum messages exceeded' });
    expect(isStoreFull(full)).toBe(true);
    expect(isStoreFull(new Error('publish failed', { cause: full }))).toBe(true);
    expect(isStoreFull(new JetStreamApiError({ code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' }))).toBe(false);
    expect(isStoreFull(new Error('timeout'))).toBe(false);
  });
});
