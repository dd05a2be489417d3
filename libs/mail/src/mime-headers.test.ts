import { describe, expect, it } from 'vitest';
import { addresses, readHeaders } from './mime-headers.js';

describe('readHeaders', () => {
  it('finds From (folded, several addresses) and Subject in the header section only', () => {
    const raw = Buffer.from(
      'Received: from x\r\n\tby y\r\nFrom: "Office, Registrar" <Registrar@Campus.example>,\r\n bounces@campus.example (returns)\r\nSubject: Grades\r\n\r\nFrom: evil@elsewhere.example\r\n',
    );
    expect(readHeaders(raw)).toEqual({
      from: ['registrar@campus.example', 'bounces@campus.example'],
      onBehalf: [],
      recipients: [],
      subject: 'Grades',
      truncated: false,
    });
  });

  it('a message without a From header yields none', () => {
    expect(readHeaders(Buffer.from('Subject: x\n\nbody')).from).toEqual([]);
  });
});

describe('recipients', () => {
  it('collects To, Cc and Bcc, groups included', () => {
    const raw = Buffer.from('To: a@x.example, Team: b@y.example, C <c@z.example>;\r\nCc: d@w.example\r\nBcc: e@v.example\r\n\r\n');
    expect(readHeaders(raw).recipients).toEqual(['a@x.example', 'b@y.example', 'c@z.example', 'd@w.example', 'e@v.example']);
  });
});

describe('addresses', () => {
  it('takes the bracketed address, else the bare one, per list item', () => {
    expect(addresses('A <a@x.example>, b@y.example, "C <c@evil.example>" <c@z.example>')).toEqual(['a@x.example', 'b@y.example', 'c@z.example']);
  });
});

describe('readHeaders: on whose behalf, and how much was read', () => {
  it('names Sender and Resent-* addresses, and says when the header section is too long to read', () => {
    const raw = Buffer.from('From: a@campus.example\r\nSender: ceo@campus.example\r\nResent-From: <dean@campus.example>\r\n\r\nbody');
    expect(readHeaders(raw).onBehalf).toEqual(['ceo@campus.example', 'dean@campus.example']);
    const long = Buffer.concat([
      Buffer.from('From: a@campus.example\r\nX-Pad: '),
      Buffer.alloc(300 * 1024, 'a'),
      Buffer.from('\r\nFrom: ceo@campus.example\r\n\r\nbody'),
    ]);
    expect(readHeaders(long).truncated).toBe(true);
  });
});
