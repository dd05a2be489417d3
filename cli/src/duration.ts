import { UsageError } from './errors.js';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Longest duration any option takes: a year. */
const MAX_DURATION_MS = 366 * UNIT_MS.d;

/** "90s", "15m", "24h", "7d", "1h30m" → milliseconds; `what` names the option in the error. */
export function parseDuration(value: string, what: string): number {
  const text = value.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
    end = re.lastIndex;
  }
  if (!text || end !== text.length || !Number.isFinite(total)) {
    throw new UsageError(`${what} "${value}": expected a duration such as 30s, 15m, 24h or 7d`);
  }
  if (total > MAX_DURATION_MS) throw new UsageError(`${what} "${value}": at most 366d`);
  return total;
}

/** A point in time: an ISO 8601 time, or a duration meaning that long ago ("24h" = 24 hours ago). */
export function parseTime(value: string, what: string, now: Date = new Date()): Date {
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) throw new UsageError(`${what} "${value}": not a valid ISO 8601 time`);
    return d;
  }
  try {
    return new Date(now.getTime() - parseDuration(value, what));
  } catch {
    throw new UsageError(`${what} "${value}": expected a duration ago (24h, 7d) or an ISO 8601 time (2030-01-01T08:00:00Z)`);
  }
}

/** 90_000 → "1m30s": short, for tables. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  let s = Math.round(ms / 1_000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
  ] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
    if (parts.length === 2) return parts.join('');
  }
  if (s || parts.length === 0) parts.push(`${s}s`);
  return parts.slice(0, 2).join('');
}

const MiB = 1024 * 1024;

/** Sizes in binary units, labelled as such (MiB = 1024 × 1024 bytes). */
export function formatBytes(n: number): string {
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
