import { describe, expect, it } from 'vitest';
import { describeGraphError, parseGraphError, parseRetryAfter } from './graph-errors.js';

const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n.toLowerCase()] ?? null });

describe('parseGraphError', () => {
  it('reads code, message, request-id and Retry-After from a Graph error answer', () => {
    const e = parseGraphError(
      429,
      JSON.stringify({ error: { code: 'ApplicationThrottled', message: 'Too many requests' } }),
      headers({ 'request-id': 'r-1', 'retry-after': '7' }),
    );
    expect(e).toEqual({ status: 429, code: 'ApplicationThrottled', message: 'Too many requests', requestId: 'r-1', retryAfterMs: 7000 });
    expect(describeGraphError(e)).toBe('ApplicationThrottled: Too many requests (HTTP 429, request-id r-1)');
  });
  it('falls back to innerError request-id and the HTTP status for a body that is not Graph JSON', () => {
    expect(
      parseGraphError(403, JSON.stringify({ error: { code: 'ErrorAccessDenied', message: 'x', innerError: { 'request-id': 'inner' } } }), headers({}))
        .requestId,
    ).toBe('inner');
    const e = parseGraphError(502, '<html>Bad gateway</html>', headers({}));
    expect(e.code).toBe('HTTP 502');
    expect(e.message).toBe('<html>Bad gateway</html>');
  });
  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('0')).toBe(0);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});
