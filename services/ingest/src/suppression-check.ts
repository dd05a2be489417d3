import { suppressionKey, type SuppressionEntry, type SuppressionList } from '@relay/bus';
import type { ClientConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import { parseAddress } from '@relay/mail';
import type { SendMailRequest } from '@relay/proto';

export type SuppressionLookup = Pick<SuppressionList, 'lookup'>;

export interface SuppressedRecipient {
  /** The request field, e.g. `cc[0]`; the address itself at the SMTP door. */
  field: string;
  address: string;
  entry: SuppressionEntry;
}

/** The address's hard bounce when it counts for this client: its suppression is on and it bounced within `for`. */
export function suppressedFor(list: SuppressionLookup | undefined, client: ClientConfig, address: string, now = Date.now()): SuppressionEntry | undefined {
  const s = client.suppression;
  if (!s || !list) return undefined;
  const entry = list.lookup(address);
  return entry && now - entry.at < s.forMs ? entry : undefined;
}

/** The recipients of a SendMail request (already validated) that hard-bounced within the client's `for`. */
export function suppressedRecipients(
  list: SuppressionLookup | undefined,
  client: ClientConfig,
  req: Pick<SendMailRequest, 'to' | 'cc' | 'bcc'>,
  now = Date.now(),
) {
  const found: SuppressedRecipient[] = [];
  if (!client.suppression || !list) return found;
  for (const field of ['to', 'cc', 'bcc'] as const) {
    req[field].forEach((raw, i) => {
      const parsed = parseAddress(raw);
      if (typeof parsed === 'string') return;
      const entry = suppressedFor(list, client, parsed.address, now);
      if (entry) found.push({ field: `${field}[${i}]`, address: parsed.address, entry });
    });
  }
  return found;
}

/** `<a@x> hard-bounced at <time> (5.1.1: diagnostic)`: what the refusal and the note say of one recipient. */
export function describeSuppressed(address: string, entry: SuppressionEntry): string {
  const why = [entry.status, entry.diagnostic].filter(Boolean).join(': ');
  return `<${address}> hard-bounced at ${new Date(entry.at).toISOString()}${why ? ` (${why})` : ''}`;
}

/** The whole refusal: who, when, why, and how to clear the entry. */
export function suppressionRefusal(client: ClientConfig, address: string, entry: SuppressionEntry, bucket: string): string {
  const forText = durationText(client.suppression?.forMs ?? 0);
  return (
    `${describeSuppressed(address, entry)} and client "${client.name}" refuses recipients that hard-bounced within ${forText} (suppression.mode: refuse); ` +
    `once the address works again, clear it with: relay suppressions remove ${address.toLowerCase()} (or nats kv del ${bucket} ${suppressionKey(address)})`
  );
}

/**
 * SendMail's check: mode refuse throws FAILED_PRECONDITION naming the first suppressed recipient;
 * mode flag returns the note the QUEUED event carries (undefined when no recipient is suppressed).
 */
export function checkSuppression(
  list: SuppressionLookup | undefined,
  client: ClientConfig,
  req: Pick<SendMailRequest, 'to' | 'cc' | 'bcc'>,
  bucket: string,
): string | undefined {
  const found = suppressedRecipients(list, client, req);
  if (found.length === 0) return undefined;
  if (client.suppression?.mode === 'refuse') {
    const first = found[0]!;
    throw new RelayError(ErrorCode.FailedPrecondition, `${first.field}: ${suppressionRefusal(client, first.address, first.entry, bucket)}`);
  }
  return flagNote(found);
}

/** `suppressed recipient <a@x> hard-bounced at ... ; ...`: the note of mode flag. */
export function flagNote(found: ReadonlyArray<{ address: string; entry: SuppressionEntry }>): string {
  const shown = found.slice(0, 5).map((f) => describeSuppressed(f.address, f.entry));
  const more = found.length > shown.length ? `; and ${found.length - shown.length} more` : '';
  return `suppressed recipient${found.length > 1 ? 's' : ''} ${shown.join('; ')}${more}`;
}

/** 30d, 12h, 90m or 45s: the largest unit that divides the duration. */
function durationText(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${Math.round(ms / 1000)}s`;
}
