import { describe, expect, it } from 'vitest';
import { bodyOfSize, percentile, stats } from './bench-load.js';

describe('bench figures', () => {
  it('takes nearest-rank percentiles', () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(v, 50)).toBe(50);
    expect(percentile(v, 99)).toBe(99);
    expect(percentile([7], 99)).toBe(7);
    expect(stats([3, 1, 2], 1)).toEqual({ count: 3, errors: 1, p50Ms: 2, p99Ms: 3, maxMs: 3 });
  });
  it('makes bodies of the asked size in short lines', () => {
    const b = bodyOfSize(2048);
    expect(b.length).toBe(2048);
    expect(Math.max(...b.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(76);
  });
});
