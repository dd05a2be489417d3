import { create } from '@bufbuild/protobuf';
import { MessageState, StatusEventSchema } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { foldHistory } from './history.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const REMEDY = 'SMTP AUTH is disabled for the tenant. Enable it for the mailbox.';
const ev = (init: Parameters<typeof create<typeof StatusEventSchema>>[1]) => create(StatusEventSchema, { messageId: 'm1', sender: 'helpdesk', ...init });

describe('foldHistory', () => {
  it("reports each change's reply and its remedy apart, and the message's trace id", () => {
    const res = foldHistory('m1', [
      ev({ state: MessageState.QUEUED, detail: 'accepted', traceId: TRACE, client: 'app' }),
      ev({ state: MessageState.SENDING, attempt: 1 }),
      ev({ state: MessageState.FAILED, attempt: 1, detail: `535 5.7.139 Authentication unsuccessful — ${REMEDY}`, remedy: REMEDY }),
    ]);
    expect(res.traceId).toBe(TRACE);
    expect(res.history.map((h) => [h.detail, h.remedy])).toEqual([
      ['accepted', ''],
      ['', ''],
      ['535 5.7.139 Authentication unsuccessful', REMEDY],
    ]);
    // The last error keeps the remedy, as ListMessages shows it.
    expect(res.lastError).toBe(`535 5.7.139 Authentication unsuccessful — ${REMEDY}`);
  });

  it('keeps a detail whole when it does not end with its remedy (cut to size), and has no trace id without one', () => {
    const res = foldHistory('m1', [ev({ state: MessageState.RETRYING, attempt: 1, detail: '421 busy … (9000 bytes in all, cut)', remedy: REMEDY })]);
    expect(res.history[0]?.detail).toBe('421 busy … (9000 bytes in all, cut)');
    expect(res.history[0]?.remedy).toBe(REMEDY);
    expect(res.traceId).toBe('');
  });
});
