/** Provider defaults from DESIGN.md; explicit `rate:` keys override them. */
export interface RatePreset {
  batchSize: number;
  intervalMs: number;
  dailyRecipients?: number;
  dailyMessages?: number;
  maxRecipientsPerMessage?: number;
  maxMessageBytes?: number;
  maxConcurrent?: number;
}

export const RATE_PRESETS = {
  'microsoft365-smtp': {
    batchSize: 30,
    intervalMs: 60_000,
    dailyRecipients: 10_000,
    maxRecipientsPerMessage: 500,
    maxMessageBytes: 35 * 1024 * 1024,
  },
  'microsoft365-graph': {
    batchSize: 10_000,
    intervalMs: 600_000,
    dailyRecipients: 10_000,
    maxConcurrent: 4,
    maxMessageBytes: 150 * 1024 * 1024,
  },
  'google-workspace': {
    batchSize: 2_000,
    intervalMs: 86_400_000,
    dailyMessages: 2_000,
    dailyRecipients: 10_000,
    maxRecipientsPerMessage: 100,
  },
  // Google Workspace's SMTP relay service (smtp-relay.gmail.com:587): per registered user,
  // 10,000 messages and 10,000 unique recipients in 24 hours; 100 recipients per message is
  // what RFC 5321 guarantees.
  'google-smtp-relay': {
    batchSize: 10_000,
    intervalMs: 86_400_000,
    dailyMessages: 10_000,
    dailyRecipients: 10_000,
    maxRecipientsPerMessage: 100,
  },
  // Microsoft 365 High Volume Email (smtp.hve.mx.microsoft:587, STARTTLS): mail to the tenant's
  // own recipients. Conservative values (see docs/configuration.md): the 100,000 recipients a day
  // Microsoft named as HVE's ceiling, messages up to 10 MB and 10 recipients each; no per-minute
  // rate is published, so 100 messages a minute.
  'microsoft365-hve': {
    batchSize: 100,
    intervalMs: 60_000,
    dailyRecipients: 100_000,
    maxRecipientsPerMessage: 10,
    maxMessageBytes: 10 * 1024 * 1024,
  },
} as const satisfies Record<string, RatePreset>;

export type PresetName = keyof typeof RATE_PRESETS;
export const PRESET_NAMES = Object.keys(RATE_PRESETS) as [PresetName, ...PresetName[]];

/** Hosts that no longer take submission on port 25 (Microsoft has blocked it; Gmail wants 587/465). */
const PORT25_REFUSED = [
  /(^|\.)office365\.com$/i,
  /(^|\.)outlook\.com$/i,
  /(^|\.)mail\.protection\.outlook\.com$/i,
  /(^|\.)gmail\.com$/i,
  /(^|\.)google\.com$/i,
  /(^|\.)googlemail\.com$/i,
];

export function port25Refusal(host: string, port: number): string | undefined {
  if (port !== 25) return undefined;
  if (!PORT25_REFUSED.some((re) => re.test(host))) return undefined;
  return `port 25 toward ${host} is refused: Microsoft 365 and Gmail do not accept authenticated submission on port 25 (Microsoft blocks it outright); use port 587 with security: starttls, or 465 with security: tls`;
}

/** Microsoft High Volume Email's SMTP endpoint. */
export const HVE_HOST = 'smtp.hve.mx.microsoft';

/** True when `domain` (lowercased) is one of `internal` (`*.x` takes x and its subdomains). */
export function isInternalDomain(domain: string, internal: readonly string[]): boolean {
  const d = domain.toLowerCase().replace(/\.$/, '');
  return internal.some((i) => (i.startsWith('*.') ? d === i.slice(2) || d.endsWith(i.slice(1)) : d === i));
}

/**
 * Why `sender` does not take mail to `address` (a bare addr-spec), or undefined when it does:
 * a sender with internal domains (its own `internal_domains`, or the microsoft365-hve preset's
 * default, the domain of `from`) sends inside them only.
 */
export function recipientRefusal(
  sender: { id: string; internalDomains?: string[]; rate?: { preset?: string | undefined } | undefined },
  address: string,
): string | undefined {
  const internal = sender.internalDomains;
  if (!internal) return undefined;
  const domain = address.slice(address.lastIndexOf('@') + 1);
  if (isInternalDomain(domain, internal)) return undefined;
  const rule =
    sender.rate?.preset === 'microsoft365-hve'
      ? 'the microsoft365-hve preset sends to internal recipients only (Microsoft High Volume Email delivers inside the tenant)'
      : 'it sends to its internal_domains only';
  return `<${address}> is outside sender "${sender.id}"'s internal domains (${internal.join(', ')}): ${rule}; add the domain to internal_domains if the tenant accepts it`;
}
