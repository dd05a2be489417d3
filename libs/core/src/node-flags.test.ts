import { describe, expect, it } from 'vitest';
import { missingNodeFlags, SERVICE_NODE_FLAGS } from './node-flags.js';

describe('service node flags', () => {
  it('cap the young generation', () => {
    expect(SERVICE_NODE_FLAGS).toContain('--max-semi-space-size=16');
  });

  it('are missing unless the arguments or NODE_OPTIONS set them (any value)', () => {
    expect(missingNodeFlags([])).toEqual(['--max-semi-space-size=16']);
    expect(missingNodeFlags(['--import', 'x.js'], '--enable-source-maps')).toEqual(['--max-semi-space-size=16']);
    expect(missingNodeFlags(['--max-semi-space-size=16', '--import', 'x.js'])).toEqual([]);
    expect(missingNodeFlags(['--max-semi-space-size=8'])).toEqual([]);
    expect(missingNodeFlags([], '--max_semi_space_size=16')).toEqual([]);
    expect(missingNodeFlags(['--import', 'x.js'], '  --max-semi-space-size=32  ')).toEqual([]);
  });
});
