const DAY_MS = 86_400_000;

/** Days before a credential's expiry when the relay warns (logs, TestSender), earliest first. */
export const EXPIRY_WARNING_DAYS = [30, 14, 3] as const;

/** How close an expiry is: 'ok', the tightest warning threshold (30, 14, 3 days) it is within, or 'expired'. */
export type ExpiryLevel = 'ok' | (typeof EXPIRY_WARNING_DAYS)[number] | 'expired';

export function expiryLevel(expiresAt: Date, now: number): ExpiryLevel {
  const left = expiresAt.getTime() - now;
  if (left <= 0) return 'expired';
  let level: ExpiryLevel = 'ok';
  for (const days of EXPIRY_WARNING_DAYS) if (left <= days * DAY_MS) level = days;
  return level;
}
