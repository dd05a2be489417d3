import { describe, expect, it } from 'vitest';
import { uuidv7 } from './ids.js';

describe('uuidv7', () => {
  it('makes distinct version-7 ids that sort by time, across refills of its random pool', () => {
    const ids = Array.from({ length: 1_000 }, (_, i) => uuidv7(1_700_000_000_000 + i));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    // The same millisecond still gives different ids (the random part differs).
    const same = Array.from({ length: 600 }, () => uuidv7(1_700_000_000_000));
    expect(new Set(same).size).toBe(same.length);
    expect(same[0]!.slice(0, 13)).toBe('018bcfe5-6800');
  });
});
