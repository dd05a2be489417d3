import { MessageState, type StatusEvent } from '@relay/proto';

/**
 * Whether a message whose newest status event is `last` is done with: SENT and FAILED (and BOUNCED,
 * which follows SENT) are final for every attempt, so a retry already queued when the message was cancelled goes no further.
 * A message sent again by hand (RetryMessages) gets a QUEUED event first, so it goes on. Checked
 * before dispatching and before sending, so a dispatch or submission the broker hands out again
 * (redelivery, a restart that lost its duplicate window) never sends a message twice.
 */
export function isSettled(last: StatusEvent | undefined): boolean {
  return last?.state === MessageState.SENT || last?.state === MessageState.FAILED || last?.state === MessageState.BOUNCED;
}
