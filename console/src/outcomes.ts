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

/** The copy to the Sent folder as GetMessage answers it in JSON (`sentCopy`). */
export interface SentCopyJson {
  state?: string;
  folder?: string;
  attempts?: number;
  lastError?: string;
  at?: string;
}

/** What the message page says of the copy to the Sent folder: where it stands, and the last error while it has one. */
export function sentCopySummary(c: SentCopyJson | undefined): { text: string; error: string; at: string | undefined } | undefined {
  if (!c?.state) return undefined;
  const n = c.attempts ?? 0;
  const tries = `${n} attempt${n === 1 ? '' : 's'}`;
  const state = c.state.replace(/^SENT_COPY_STATE_/, '');
  const text =
    state === 'COPIED'
      ? `Copied${c.folder ? ` to ${c.folder}` : ''} (${tries})`
      : state === 'RETRYING'
        ? `Not copied yet, trying again (${tries})`
        : state === 'GAVE_UP'
          ? `Gave up: no copy (${tries})`
          : state.toLowerCase();
  return { text, error: state === 'COPIED' ? '' : (c.lastError ?? ''), at: c.at };
}
