import { describe, expect, it } from 'vitest';
import { refreshAt, TOKEN_MARGIN_MS } from './token-cache.js';

describe('refreshAt', () => {
  it('refreshes an hour-long token 10 minutes before it expires', () => {
    const t = { accessToken: 'a', obtainedAt: 0, expiresAt: 3_600_000 };
    expect(TOKEN_MARGIN_MS).toBe(600_000);
    expect(refreshAt(t)).toBe(3_000_000);
  });

  it('uses half the life of a token shorter than twice the margin, rather than refreshing on every use', () => {
    expect(refreshAt({ accessToken: 'a', obtainedAt: 0, expiresAt: 600_000 })).toBe(300_000);
  });
});
