import { describe, expect, it } from 'vitest';
import { addresses, readHeaders } from './headers.js';

describe('readHeaders', () => {
  it('finds From (folded, several addresses) and Subject in the header section only', () => {
    const raw = Buffer.from(
      'Received: from x\r\n\tby y\r\nFrom: "Office, Registrar" <Registrar@Campus.example>,\r\n bounces@campus.example (returns)\r\nSubject: Grades\r\n\r\nFrom: evil@elsewhere.example\r\n',
    );
    expect(readHeaders(raw)).toEqual({ from: ['registrar@campus.example', 'bounces@campus.example'], subject: 'Grades', complete: true });
  });

  it('a message without a From header yields none', () => {
    expect(readHeaders(Buffer.from('Subject: x\n\nbody')).from).toEqual([]);
  });
});

describe('addresses', () => {
  it('takes the bracketed address, else the bare one, per list item', () => {
    expect(addresses('A <a@x.example>, b@y.example, "C <c@evil.example>" <c@z.example>')).toEqual(['a@x.example', 'b@y.example', 'c@z.example']);
  });
});
