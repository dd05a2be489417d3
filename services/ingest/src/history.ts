import { create } from '@bufbuild/protobuf';
import { latestOutcomes } from '@relay/bus';
import { GetMessageResponseSchema, MessageState, StateChangeSchema, type GetMessageResponse, type StatusEvent } from '@relay/proto';

/** Folds a message's status events into what GetMessage reports. */
export function foldHistory(messageId: string, events: StatusEvent[]): GetMessageResponse {
  let lastError = '';
  let attempts = 0;
  for (const e of events) {
    attempts = Math.max(attempts, e.attempt);
    if (e.state === MessageState.RETRYING || e.state === MessageState.FAILED || e.state === MessageState.BOUNCED) lastError = e.detail;
  }
  const last = events.at(-1);
  return create(GetMessageResponseSchema, {
    messageId,
    state: last?.state ?? MessageState.UNSPECIFIED,
    attempts,
    lastError,
    sender: last?.sender ?? '',
    history: events.map((e) => create(StateChangeSchema, { state: e.state, at: e.at, detail: replyOf(e), attempt: e.attempt, remedy: e.remedy })),
    traceId: events.find((e) => e.traceId)?.traceId ?? '',
    recipientOutcomes: latestOutcomes(events.flatMap((e) => e.outcomes)),
  });
}

/** An event's detail without the remedy the sender appended to it (the remedy is reported apart). */
function replyOf(e: StatusEvent): string {
  const suffix = ` — ${e.remedy}`;
  return e.remedy && e.detail.endsWith(suffix) ? e.detail.slice(0, -suffix.length) : e.detail;
}
