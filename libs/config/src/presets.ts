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
