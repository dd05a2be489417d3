import { describe, expect, it } from 'vitest';
import { decodeBase64, isMailbox, parsePathCommand } from './parse.js';
import { replyLine, SmtpReply } from './reply.js';

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof SmtpReply) return `${err.code} ${err.message}`;
    throw err;
  }
  throw new Error('no refusal');
};

describe('parsePathCommand', () => {
  it('reads the address and the parameters', () => {
    expect(parsePathCommand('FROM:<a@b.example> SIZE=100 body=8BITMIME SMTPUTF8', 'FROM')).toEqual({
      address: 'a@b.example',
      args: { SIZE: '100', BODY: '8BITMIME', SMTPUTF8: true },
    });
    expect(parsePathCommand('to: <c@d.example>', 'TO')).toEqual({ address: 'c@d.example', args: {} });
  });

  it('takes the null sender, and drops a source route', () => {
    expect(parsePathCommand('FROM:<>', 'FROM').address).toBe('');
    expect(parsePathCommand('TO:<@relay.example,@b.example:u@c.example>', 'TO').address).toBe('u@c.example');
  });

  it('refuses bad syntax with the code that says what is wrong', () => {
    expect(refusal(() => parsePathCommand('FROM a@b.example', 'FROM'))).toMatch(/^501 5\.5\.4 Syntax: MAIL FROM:<address>/);
    expect(refusal(() => parsePathCommand('FROM:a@b.example', 'FROM'))).toMatch(/^501 5\.5\.4 .*angle brackets/);
    expect(refusal(() => parsePathCommand('FROM:<a@b.example', 'FROM'))).toMatch(/^501 5\.5\.4 .*closing angle bracket/);
    expect(refusal(() => parsePathCommand('FROM:<not-an-address>', 'FROM'))).toBe('501 5.1.7 Bad address syntax: <not-an-address>');
    expect(refusal(() => parsePathCommand('TO:<a@@b>', 'TO'))).toBe('501 5.1.3 Bad address syntax: <a@@b>');
    expect(refusal(() => parsePathCommand('TO:<>', 'TO'))).toBe('501 5.1.3 A recipient address is required');
    expect(refusal(() => parsePathCommand(`TO:<${'a'.repeat(250)}@b.example>`, 'TO'))).toBe('501 5.1.3 Address longer than 256 bytes');
    expect(refusal(() => parsePathCommand('FROM:<a@b.example> =x', 'FROM'))).toMatch(/^501 5\.5\.4 Bad parameter syntax/);
  });
});

describe('isMailbox', () => {
  it('takes dot-atoms, quoted local parts, address literals and UTF-8', () => {
    for (const ok of ['a@b', 'first.last+tag@campus.example', '"john doe"@x.example', 'u@[127.0.0.1]', 'zoë@tëst.example', '用户@例子.广告']) {
      expect(isMailbox(ok), ok).toBe(true);
    }
  });

  it('refuses what is not an address', () => {
    for (const bad of ['', 'a', '@b', 'a@', 'a b@c', '.a@b', 'a.@b', 'a..b@c', 'a@b..c', 'a@b c', 'a<b@c', 'a@[x y]']) {
      expect(isMailbox(bad), bad).toBe(false);
    }
  });
});

describe('decodeBase64', () => {
  it('decodes padded base64 and refuses anything else', () => {
    expect(decodeBase64(Buffer.from('\0u\0p').toString('base64'))?.toString()).toBe('\0u\0p');
    expect(decodeBase64('abc')).toBeUndefined();
    expect(decodeBase64('ab!=')).toBeUndefined();
    expect(decodeBase64('a=bc')).toBeUndefined();
  });
});

describe('replyLine', () => {
  it('keeps an enhanced code the text has, adds the generic one where it has none', () => {
    expect(replyLine(550, '5.7.1 Not yours')).toBe('550 5.7.1 Not yours\r\n');
    expect(replyLine(451, 'Try later')).toBe('451 4.0.0 Try later\r\n');
    expect(replyLine(354, 'Go ahead')).toBe('354 Go ahead\r\n');
    expect(replyLine(250, '2.0.0 two\r\nlines')).toBe('250 2.0.0 two lines\r\n');
  });
});
