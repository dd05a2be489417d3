import { describe, expect, it } from 'vitest';
import { formatLogLine, parseLogLine } from './log-lines.js';

const line = (o: object) => JSON.stringify(o);

describe('formatLogLine', () => {
  it('shows warnings and worse, with the error message', () => {
    expect(formatLogLine('ingest', line({ level: 40, msg: 'slow broker' }), { verbose: false })).toBe('[ingest] WARN: slow broker');
    expect(formatLogLine('ingest', line({ level: 50, msg: 'publish failed', err: { message: 'timeout' } }), { verbose: false })).toBe(
      '[ingest] ERROR: publish failed: timeout',
    );
    expect(formatLogLine('ingest', line({ level: 30, msg: 'accepted' }), { verbose: false })).toBeUndefined();
    expect(formatLogLine('ingest', line({ level: 30, msg: 'accepted' }), { verbose: true })).toBe('[ingest] accepted');
  });

  it('always shows ready lines and plain text, aligned to a width', () => {
    expect(formatLogLine('ingest', line({ level: 30, msg: 'ready', ports: { grpc: 50051 } }), { verbose: false, width: 8 })).toBe(
      '[ingest]   ready (grpc 50051)',
    );
    expect(formatLogLine('ingest', 'TypeError: x is not a function', { verbose: false })).toBe('[ingest] TypeError: x is not a function');
    expect(formatLogLine('ingest', '   ', { verbose: false })).toBeUndefined();
  });
});

describe('parseLogLine', () => {
  it('reads JSON objects only', () => {
    expect(parseLogLine(line({ msg: 'ready' }))).toEqual({ msg: 'ready' });
    expect(parseLogLine('{broken')).toBeUndefined();
    expect(parseLogLine('[1,2]')).toBeUndefined();
  });
});
