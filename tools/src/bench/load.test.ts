import { describe, expect, it } from 'vitest';
import { bodyOfSize, openLoop, percentile, stats } from './load.js';

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

describe('openLoop', () => {
  it('makes every call, counts the answered and the failed, and waits for the last answer', async () => {
    let made = 0;
    let answered = 0;
    const client = {
      sendMail: () => {
        const n = made++;
        return new Promise<unknown>((resolve, reject) =>
          setTimeout(() => {
            answered++;
            if (n % 3 === 2) reject(new Error('refused'));
            else resolve({});
          }, n % 5),
        );
      },
    };
    const r = await openLoop(client, 1_000, 0.06, () => ({ sender: 's', to: ['a@b.example'], subject: 'x', text: 'y' }));
    expect(made).toBe(60);
    expect(answered).toBe(60);
    expect(r.errors).toBe(20);
    expect(r.count).toBe(40);
    expect(r.p50Ms).toBeGreaterThanOrEqual(0);
    expect(r.maxMs).toBeGreaterThanOrEqual(r.p99Ms);
  });
});
