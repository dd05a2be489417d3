import { createHash } from 'node:crypto';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { WebhookEventName } from '@relay/config';
import { DeliveryOutcome, MessageState, type RecipientOutcome, type StatusEvent } from '@relay/proto';

/** The webhook event each state change is sent as (`message.<name>`); other states send none. */
export const STATE_EVENTS: ReadonlyMap<MessageState, WebhookEventName> = new Map([
  [MessageState.QUEUED, 'queued'],
  [MessageState.SENDING, 'sending'],
  [MessageState.SENT, 'sent'],
  [MessageState.RETRYING, 'retrying'],
  [MessageState.FAILED, 'failed'],
  [MessageState.BOUNCED, 'bounced'],
]);

/** States whose detail is an error, shown as `last_error`. */
const ERROR_STATES = new Set<MessageState>([MessageState.RETRYING, MessageState.FAILED, MessageState.BOUNCED]);

/** One event as it waits for an endpoint on the webhooks stream: the body is signed and posted as it is. */
export interface WebhookJob {
  /** The `webhook-id` header: the same on every attempt, so receivers drop repeats by it. */
  id: string;
  type: string;
  message_id: string;
  body: string;
}

/**
 * The event for a status event stored at status stream sequence `seq`, in the Standard Webhooks
 * shape `{ type, timestamp, data }`. Its id comes from the message and the sequence: a status
 * event delivered twice makes the same event, with the same id.
 */
export function webhookJob(ev: StatusEvent, client: string, seq: number): WebhookJob | undefined {
  const name = STATE_EVENTS.get(ev.state);
  if (!name) return undefined;
  const type = `message.${name}`;
  const at = ev.at ? timestampDate(ev.at) : new Date();
  const body = JSON.stringify({
    type,
    timestamp: at.toISOString(),
    data: {
      message_id: ev.messageId,
      client,
      sender: ev.sender,
      state: MessageState[ev.state],
      attempts: ev.attempt,
      last_error: ERROR_STATES.has(ev.state) ? ev.detail : '',
      detail: ev.detail,
      // On an event from a delivery report: what it said of each recipient it names.
      ...(ev.outcomes.length > 0 ? { recipient_outcomes: ev.outcomes.map(outcomeJson) } : {}),
    },
  });
  return { id: `evt_${ev.messageId.replaceAll('-', '')}_${seq}`, type, message_id: ev.messageId, body };
}

const OUTCOME_NAMES: Record<DeliveryOutcome, string> = {
  [DeliveryOutcome.UNSPECIFIED]: 'unspecified',
  [DeliveryOutcome.DELIVERED]: 'delivered',
  [DeliveryOutcome.BOUNCED]: 'bounced',
  [DeliveryOutcome.DELAYED]: 'delayed',
};

function outcomeJson(o: RecipientOutcome) {
  return { recipient: o.recipient, outcome: OUTCOME_NAMES[o.outcome], status: o.status, diagnostic: o.diagnostic };
}

/** A token for one client's endpoint, safe in subjects and consumer names; the same URL of two clients differs. */
export function endpointKey(client: string, url: string): string {
  return createHash('sha256').update(`${client}\0${url}`).digest('hex').slice(0, 20);
}

/** The URL without query or credentials, for logs: a token in a query string stays out of them. */
export function urlForLog(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
