/** A recipient's outcome as GetMessage answers it in JSON (`recipientOutcomes`). */
export interface RecipientOutcomeJson {
  recipient?: string;
  outcome?: string;
  status?: string;
  diagnostic?: string;
  at?: string;
}

export interface OutcomeRow {
  recipient: string;
  /** bounced, delayed or delivered. */
  outcome: string;
  /** The status code and the server's reply, as one line. */
  reply: string;
  at: string | undefined;
}

/** The rows of a message's "Recipients" table: what delivery reports said of each recipient. */
export function outcomeRows(outcomes: RecipientOutcomeJson[] | undefined): OutcomeRow[] {
  return (outcomes ?? []).map((o) => ({
    recipient: o.recipient ?? '',
    outcome: String(o.outcome ?? '')
      .replace(/^DELIVERY_OUTCOME_/, '')
      .toLowerCase(),
    reply: o.diagnostic || o.status || '',
    at: o.at,
  }));
}
