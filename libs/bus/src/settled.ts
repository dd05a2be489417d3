import { MessageState, type StatusEvent } from '@relay/proto';

/**
 * Whether a message whose newest status event is `last` is done with, for an envelope of
 * `attempt`: SENT is final; FAILED is final for that attempt and earlier ones, so a message sent
 * again by hand (a later attempt) goes on. Checked before dispatching and before sending, so a
 * dispatch or submission the broker hands out again (redelivery, a restart that lost its
 * duplicate window) never sends a message twice.
 */
export function isSettled(last: StatusEvent | undefined, attempt: number): boolean {
  if (!last) return false;
  if (last.state === MessageState.SENT) return true;
  return last.state === MessageState.FAILED && last.attempt >= attempt;
}
