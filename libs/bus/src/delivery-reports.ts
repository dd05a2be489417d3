import { createHash } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { DeliveryOutcome, MessageState, RecipientOutcomeSchema, type RecipientOutcome, type StatusEvent } from '@relay/proto';
import type { Bus } from './bus.js';
import { INDEX_BOUNDS } from './message-index.js';
import { listSome } from './status-detail.js';
import { recordSuppressions } from './suppression.js';

/** What a delivery report said, as @relay/mail's parseDeliveryReport reads it. */
export interface ReportedOutcomes {
  /** The relay's id of the message the report is about. */
  relayMessageId?: string;
  /** The report's own Message-ID: the same report read twice is recorded once. */
  reportMessageId?: string;
  /** When the report was written. */
  date?: Date;
  recipients: Array<{ recipient: string; outcome: 'bounced' | 'delayed' | 'delivered'; status: string; diagnostic: string }>;
}

export type RecordResult = { recorded: true; messageId: string; state: MessageState } | { recorded: false; messageId?: string; reason: string };

const OUTCOMES = { bounced: DeliveryOutcome.BOUNCED, delayed: DeliveryOutcome.DELAYED, delivered: DeliveryOutcome.DELIVERED } as const;

/**
 * Records a delivery report on the message it is about: a status event carrying the outcome of
 * each recipient it names. The message becomes BOUNCED when every one of its recipients has
 * bounced (in this report or earlier ones); otherwise it stays SENT, with the outcomes listed.
 * Only a SENT message takes a report; one about a message this relay does not know (or not SENT)
 * is left out, and the result says why.
 */
export async function recordDeliveryReport(bus: Bus, report: ReportedOutcomes, service: string): Promise<RecordResult> {
  const messageId = report.relayMessageId;
  if (!messageId) return { recorded: false, reason: 'the report names no message of this relay' };
  const events = await bus.history(messageId);
  const last = events.at(-1);
  if (!last) return { recorded: false, messageId, reason: 'no such message' };
  if (last.state !== MessageState.SENT) return { recorded: false, messageId, reason: `the message is ${MessageState[last.state]}, not SENT` };
  if (report.recipients.length === 0) return { recorded: false, messageId, reason: 'the report names no recipient' };

  const at = timestampFromDate(report.date ?? new Date());
  const outcomes = report.recipients.map((r) =>
    create(RecipientOutcomeSchema, { recipient: r.recipient, outcome: OUTCOMES[r.outcome], status: r.status, diagnostic: r.diagnostic, at }),
  );
  const all = latestOutcomes([...events.flatMap((e) => e.outcomes), ...outcomes]);
  const bounced = all.filter((o) => o.outcome === DeliveryOutcome.BOUNCED).length;
  const total = recipientCount(events);
  const state = total > 0 && bounced >= total ? MessageState.BOUNCED : MessageState.SENT;
  await bus.publishStatus(
    { messageId, sender: last.sender, state, attempt: last.attempt, detail: describeOutcomes(report.recipients), service, outcomes },
    undefined,
    report.reportMessageId ? `${messageId}.report.${createHash('sha256').update(report.reportMessageId).digest('hex').slice(0, 32)}` : undefined,
  );
  await recordSuppressions(bus, report.recipients, { messageId, sender: last.sender, at: report.date ?? new Date() });
  return { recorded: true, messageId, state };
}

/** The newest outcome of each recipient (compared case-insensitively), in the order first named. */
export function latestOutcomes(outcomes: readonly RecipientOutcome[]): RecipientOutcome[] {
  const byRecipient = new Map<string, RecipientOutcome>();
  for (const o of outcomes) byRecipient.set(o.recipient.toLowerCase(), o);
  return [...byRecipient.values()];
}

/**
 * How many recipients the message has: the QUEUED event's count, or, for a message queued
 * without one, its recipient list when the index kept all of it; 0 when unknown.
 */
function recipientCount(events: readonly StatusEvent[]): number {
  const counted = Math.max(0, ...events.map((e) => e.recipientCount));
  if (counted > 0) return counted;
  const listed = events.find((e) => e.to.length > 0)?.to.length ?? 0;
  return listed < INDEX_BOUNDS.recipients ? listed : 0;
}

/** `bounced: a@x (550 5.1.1 ...); delayed: b@y (...)`: the report's recipients by outcome. */
function describeOutcomes(recipients: ReportedOutcomes['recipients']): string {
  const parts: string[] = [];
  for (const kind of ['bounced', 'delayed', 'delivered'] as const) {
    const named = recipients
      .filter((r) => r.outcome === kind)
      .map((r) => (r.diagnostic || r.status ? `${r.recipient} (${r.diagnostic || r.status})` : r.recipient));
    if (named.length > 0) parts.push(`${kind}: ${listSome(named)}`);
  }
  return `delivery report: ${parts.join('; ')}`;
}
