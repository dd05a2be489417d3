import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';
import { backoffMs, InFlight, once } from './lifecycle.js';

describe('parseDuration', () => {
  it('converts units to milliseconds', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('60s')).toBe(60_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration(2)).toBe(2000);
  });
  it('rejects what it cannot read', () => {
    expect(() => parseDuration('soon')).toThrow(/invalid duration "soon"/);
    expect(() => parseDuration('10 parsecs')).toThrow(/invalid duration/);
    expect(() => parseDuration(-1)).toThrow(/invalid duration/);
  });
});

describe('backoffMs', () => {
  it('doubles per attempt within jitter and stops at the maximum', () => {
    expect(backoffMs(1, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffMs(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffMs(3, 1000, 60_000, () => 1)).toBe(4000);
    expect(backoffMs(20, 1000, 60_000, () => 1)).toBe(60_000);
  });
});

describe('once and InFlight', () => {
  it('runs a stop function once', async () => {
    let n = 0;
    const stop = once(async () => void n++);
    await Promise.all([stop(), stop()]);
    expect(n).toBe(1);
  });
  it('reports idle only after the work finished', async () => {
    const f = new InFlight();
    let release!: () => void;
    const job = f.run(() => new Promise<void>((r) => (release = r)));
    let idle = false;
    const waiting = f.idle().then(() => (idle = true));
    await Promise.resolve();
    expect(f.size).toBe(1);
    expect(idle).toBe(false);
    release();
    await job;
    await waiting;
    expect(idle).toBe(true);
  });
});
