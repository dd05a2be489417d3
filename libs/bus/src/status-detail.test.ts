import { describe, expect, it } from 'vitest';
import { boundDetail, listSome } from './status-detail.js';

describe('status event detail', () => {
  it('keeps a short detail as it is', () => {
    expect(boundDetail('250 2.0.0 OK')).toBe('250 2.0.0 OK');
  });

  it('cuts a long one to the byte limit on a character boundary and says so', () => {
    const long = `550 ${'é'.repeat(5_000)}`;
    const cut = boundDetail(long, 1_000);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(1_000);
    expect(cut).toMatch(/^550 é+ … \(10004 bytes in all, cut\)$/);
  });

  it('names the first addresses and counts the rest', () => {
    const addresses = Array.from({ length: 30_001 }, (_, i) => `r${i}@x.example`);
    expect(listSome(addresses, 2)).toBe('r0@x.example, r1@x.example and 29999 more');
    expect(listSome(addresses.slice(0, 2), 2)).toBe('r0@x.example, r1@x.example');
  });
});
