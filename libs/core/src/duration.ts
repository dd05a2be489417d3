const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "500ms", "60s", "10m", "24h", "30d" (or a plain number of seconds) into milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error(`invalid duration ${value}`);
    return value * 1000;
  }
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) throw new Error(`invalid duration "${value}" (use e.g. 500ms, 60s, 10m, 24h, 7d)`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as string]!);
}
