import { describe, expect, it } from 'vitest';
import { refusalLine } from './refusal-log.js';

describe('refusalLine', () => {
  it('names the sender once, and the reason', () => {
    const unreachable = new Error(
      'sender "library": cannot reach the identity platform at login.microsoftonline.com: connection refused; allow outbound TCP 443',
    );
    expect(refusalLine('credentials refused', 'library', unreachable)).toBe(`credentials refused: ${unreachable.message}`);
    expect(refusalLine('credentials refused', 'library', new Error('internal token required'))).toBe(
      'credentials refused: sender "library": internal token required',
    );
    expect(refusalLine('consent refused', undefined, 'no sender given')).toBe('consent refused: no sender given');
  });
});
