import type { RateConfig } from '@relay/config';
import { describe, expect, it } from 'vitest';
import { pacingView, type PacingSnapshot } from './pacing-view.js';

const NOW = 1_000_000_000;
const rate = (r: Partial<RateConfig>): RateConfig => ({
  preset: undefined,
  batchSize: undefined,
  intervalMs: undefined,
  dailyRecipients: undefined,
  dailyMessages: undefined,
  maxRecipientsPerMessage: undefined,
  maxMessageBytes: undefined,
  maxConcurrent: undefined,
  dailyWindowMs: 4_000,
  ...r,
});
const snap = (window: number[], day: Array<{ t: number; r: number }> = []): PacingSnapshot => ({ now: NOW, window, day, source: 'redis' });

describe('pacingView', () => {
  it('has room now while the interval window holds fewer grants than the batch', () => {
    expect(pacingView(snap([NOW - 10_000]), rate({ batchSize: 2, intervalMs: 60_000 })).nextSlotAt).toBe(NOW);
  });

  it('opens the next slot when the oldest grant of a full batch leaves the interval window', () => {
    const r = rate({ batchSize: 2, intervalMs: 60_000 });
    expect(pacingView(snap([NOW - 50_000, NOW - 10_000]), r).nextSlotAt).toBe(NOW + 10_000);
  });

  it('counts the recipients of the daily window and waits for room under the recipient cap', () => {
    const r = rate({ dailyRecipients: 3 });
    const v = pacingView(
      snap(
        [],
        [
          { t: NOW - 3_000, r: 2 },
          { t: NOW - 1_000, r: 1 },
        ],
      ),
      r,
    );
    // Three of three used: one recipient more fits once the first grant (two) leaves the window.
    expect(v).toEqual({ recipientsToday: 3, nextSlotAt: NOW + 1_000 });
    expect(pacingView(snap([], [{ t: NOW - 1_000, r: 2 }]), r)).toEqual({ recipientsToday: 2, nextSlotAt: NOW });
  });

  it('waits for the message cap, and takes the later of the two limits', () => {
    const r = rate({ dailyMessages: 2, batchSize: 1, intervalMs: 10_000 });
    const v = pacingView(
      snap(
        [NOW - 1_000],
        [
          { t: NOW - 3_500, r: 1 },
          { t: NOW - 1_000, r: 1 },
        ],
      ),
      r,
    );
    expect(v.nextSlotAt).toBe(NOW + 9_000);
    const w = pacingView(
      snap(
        [NOW - 9_900],
        [
          { t: NOW - 2_000, r: 1 },
          { t: NOW - 1_000, r: 1 },
        ],
      ),
      r,
    );
    expect(w.nextSlotAt).toBe(NOW + 2_000);
  });
});
