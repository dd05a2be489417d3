/** Header fields of a raw RFC 5322 message, for the few decisions made without parsing all of it. */
export interface HeaderSummary {
  /** Addresses in the From field(s), lowercased addr-specs. */
  from: string[];
  /** Addresses in Sender, Resent-From and Resent-Sender: who else the message claims to be from. */
  onBehalf: string[];
  /** Addresses in To, Cc and Bcc, lowercased addr-specs. */
  recipients: string[];
  /** The Subject as written (encoded words are left encoded). */
  subject: string;
  /** The header section is longer than MAX_HEADER_BYTES, so not all of it was read. */
  truncated: boolean;
}

/** Longest header section looked at; a longer one is reported as truncated. */
export const MAX_HEADER_BYTES = 256 * 1024;

export function readHeaders(raw: Uint8Array): HeaderSummary {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, Math.min(raw.byteLength, MAX_HEADER_BYTES));
  let end = bytes.indexOf('\r\n\r\n');
  if (end < 0) end = bytes.indexOf('\n\n');
  const truncated = end < 0 && raw.byteLength > MAX_HEADER_BYTES;
  const text = bytes.subarray(0, end < 0 ? bytes.length : end).toString('utf8');
  const from: string[] = [];
  const onBehalf: string[] = [];
  const recipients: string[] = [];
  let subject = '';
  // Unfold: a line starting with white space continues the field before it.
  for (const field of text.split(/\r?\n(?![ \t])/)) {
    const colon = field.indexOf(':');
    if (colon <= 0) continue;
    const name = field.slice(0, colon).trim().toLowerCase();
    const value = field
      .slice(colon + 1)
      .replace(/\r?\n[ \t]/g, ' ')
      .trim();
    if (name === 'from') from.push(...addresses(value));
    else if (name === 'sender' || name === 'resent-from' || name === 'resent-sender') onBehalf.push(...addresses(value));
    else if (name === 'to' || name === 'cc' || name === 'bcc') recipients.push(...addresses(value));
    else if (name === 'subject' && !subject) subject = value;
  }
  return { from, onBehalf, recipients, subject, truncated };
}

/** The addr-specs of an address list: per item, the one in angle brackets, else the word with an "@". */
export function addresses(value: string): string[] {
  const withoutComments = value.replace(/\([^()]*\)/g, ' ');
  const out: string[] = [];
  // Commas outside quoted display names separate the items; a group's name ends at its colon.
  for (const item of withoutComments.split(/,(?=(?:[^"]*"[^"]*")*[^"]*$)/)) {
    const bracketed = /<([^<>]*)>\s*;?\s*$/.exec(item);
    const spec = bracketed
      ? bracketed[1]!
      : item
          .replace(/^[^"@]*:/, '')
          .replace(/;\s*$/, '')
          .split(/\s+/)
          .find((w) => w.includes('@'));
    if (spec?.trim()) out.push(spec.trim().toLowerCase());
  }
  return out;
}
