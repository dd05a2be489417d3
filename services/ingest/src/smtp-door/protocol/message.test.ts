import { describe, expect, it } from 'vitest';
import { DotDecoder, MessageSink } from './message.js';

/** Feeds `parts` to a decoder; returns the message and what came after the terminator. */
function decode(parts: Buffer[]): { message: string; rest: string; ended: boolean } {
  const d = new DotDecoder();
  const out: Buffer[] = [];
  for (const [i, part] of parts.entries()) {
    const end = d.push(part, (c) => out.push(Buffer.from(c)));
    if (end !== -1)
      return {
        message: Buffer.concat(out).toString('latin1'),
        rest: Buffer.concat([part.subarray(end), ...parts.slice(i + 1)]).toString('latin1'),
        ended: true,
      };
  }
  return { message: Buffer.concat(out).toString('latin1'), rest: '', ended: false };
}

/** Every way of cutting `text` in two, and byte by byte. */
function splits(text: string): Buffer[][] {
  const b = Buffer.from(text, 'latin1');
  const out: Buffer[][] = [[b]];
  for (let i = 1; i < b.length; i++) out.push([b.subarray(0, i), b.subarray(i)]);
  out.push([...b].map((x) => Buffer.from([x])));
  return out;
}

describe('DotDecoder', () => {
  const cases: [string, string, string][] = [
    ['plain message', 'a: b\r\n\r\nhello\r\n.\r\nQUIT\r\n', 'a: b\r\n\r\nhello\r\n'],
    ['empty message', '.\r\n', ''],
    ['stuffed dots', '..leading\r\n...two\r\n.\r\n', '.leading\r\n..two\r\n'],
    ['a dot line that is not the end', 'x\r\n.\rno\r\n.x\r\n.\r\n', 'x\r\n\rno\r\nx\r\n'],
    ['dots inside lines stay', 'a.b\r\n\r\n.\r\n', 'a.b\r\n\r\n'],
    ['bare LF and CR are text', 'a\n.\nb\r.\r\nc\r\n.\r\n', 'a\n.\nb\r.\r\nc\r\n'],
    ['CR before CRLF', 'a\r\r\n.\r\n', 'a\r\r\n'],
  ];
  for (const [name, input, message] of cases) {
    it(`${name}, at every chunk boundary`, () => {
      const rest = input.slice(input.indexOf('\r\n.\r\n') === -1 ? 3 : input.indexOf('\r\n.\r\n') + 5);
      for (const parts of splits(input)) {
        const got = decode(parts);
        expect(got, JSON.stringify(parts.map((p) => p.toString('latin1')))).toEqual({
          message,
          rest: input.startsWith('.\r\n') ? input.slice(3) : rest,
          ended: true,
        });
      }
    });
  }

  it('does not end without the terminator', () => {
    expect(decode([Buffer.from('a\r\n.\r')])).toEqual({ message: 'a\r\n', rest: '', ended: false });
  });

  it('passes runs on as slices of the input, without copying', () => {
    const input = Buffer.from('Subject: x\r\n\r\nbody\r\n.\r\n');
    const seen: Buffer[] = [];
    new DotDecoder().push(input, (c) => seen.push(c));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.buffer).toBe(input.buffer);
  });
});

describe('MessageSink', () => {
  it('keeps chunks up to the limit, then only counts', () => {
    const sink = new MessageSink(5);
    sink.add(Buffer.from('abc'));
    sink.add(Buffer.from('de'));
    expect(sink.exceeded).toBe(false);
    sink.add(Buffer.from('f'));
    sink.add(Buffer.from('gh'));
    expect({ size: sink.size, exceeded: sink.exceeded, chunks: sink.chunks }).toEqual({ size: 8, exceeded: true, chunks: [] });
  });

  it('tells before reading whether a chunk would take it over', () => {
    const sink = new MessageSink(5);
    sink.add(Buffer.from('abc'));
    expect(sink.wouldExceed(2)).toBe(false);
    expect(sink.wouldExceed(3)).toBe(true);
    sink.overflow(3);
    expect({ size: sink.size, exceeded: sink.exceeded }).toEqual({ size: 6, exceeded: true });
  });
});
