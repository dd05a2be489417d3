import { create } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { SendMailRequestSchema } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { isCliError } from '../errors.js';
import { buildRequest, contentType, type SendOptions, toSendArgs } from './args.js';

function usageError(o: SendOptions): string {
  try {
    toSendArgs(o);
  } catch (err) {
    if (isCliError(err) && err.exitCode === 2) return err.message;
    throw err;
  }
  throw new Error('expected a UsageError');
}

describe('toSendArgs', () => {
  it('reads every option', () => {
    const args = toSendArgs({
      sender: 'no-reply',
      to: ['a@b.example', 'c@d.example, e@f.example'],
      cc: ['cc@b.example'],
      bcc: ['bcc@b.example'],
      replyTo: 'help@b.example',
      subject: 'Hi',
      text: 'plain',
      html: '<p>html</p>',
      attach: ['a.pdf', 'b.txt'],
      header: ['X-Ticket=42', 'X-Empty=', 'X-Eq=a=b'],
      idempotencyKey: 'k1',
      sendAt: '2030-01-01T08:00:00Z',
      wait: true,
    });
    expect(args).toEqual({
      sender: 'no-reply',
      to: ['a@b.example', 'c@d.example', 'e@f.example'],
      cc: ['cc@b.example'],
      bcc: ['bcc@b.example'],
      replyTo: 'help@b.example',
      subject: 'Hi',
      text: 'plain',
      html: '<p>html</p>',
      attach: ['a.pdf', 'b.txt'],
      headers: { 'X-Ticket': '42', 'X-Empty': '', 'X-Eq': 'a=b' },
      idempotencyKey: 'k1',
      sendAt: new Date('2030-01-01T08:00:00Z'),
      wait: true,
    });
  });

  it('has defaults for everything but a recipient and a subject', () => {
    const args = toSendArgs({ to: ['you@example.test'], subject: 'hi' });
    expect(args).toMatchObject({ sender: undefined, cc: [], bcc: [], attach: [], headers: {}, wait: false, sendAt: undefined });
  });

  it('says what is wrong', () => {
    expect(usageError({ subject: 'x' })).toContain('no recipient');
    expect(usageError({ to: ['a@b.example'] })).toBe('--subject is required');
    expect(usageError({ to: ['a@b.example'], subject: 'x', header: ['X-Ticket: 42'] })).toContain('expected NAME=VALUE');
    expect(usageError({ to: ['a@b.example'], subject: 'x', sendAt: 'tomorrow' })).toContain('ISO 8601');
    expect(usageError({ to: ['a@b.example'], subject: 'x', sendAt: '2030-13-45T00:00:00Z' })).toContain('ISO 8601');
  });
});

describe('buildRequest', () => {
  it('maps the arguments onto SendMailRequest', () => {
    const args = toSendArgs({
      to: ['a@b.example'],
      subject: 'x',
      html: '<p>hi</p>',
      header: ['X-A=1'],
      sendAt: '2030-01-01T00:00:00Z',
      idempotencyKey: 'k',
    });
    const req = create(SendMailRequestSchema, buildRequest(args, 'demo', [{ path: '/tmp/report.PDF', content: new Uint8Array([1, 2]) }]));
    expect(req).toMatchObject({ sender: 'demo', to: ['a@b.example'], subject: 'x', text: '', html: '<p>hi</p>', headers: { 'X-A': '1' }, idempotencyKey: 'k' });
    expect(req.attachments[0]).toMatchObject({ filename: 'report.PDF', contentType: 'application/pdf', content: new Uint8Array([1, 2]) });
    expect(timestampDate(req.sendAt!).toISOString()).toBe('2030-01-01T00:00:00.000Z');
  });

  it('gives a message with no body a short text', () => {
    const req = buildRequest(toSendArgs({ to: ['a@b.example'], subject: 'x' }), 'demo', []);
    expect(req.text).toBe('Hello from Campus Relay.\n');
    expect(req.sendAt).toBeUndefined();
  });

  it('guesses content types', () => {
    expect(contentType('a.txt')).toBe('text/plain');
    expect(contentType('a.unknown')).toBe('application/octet-stream');
    expect(contentType('noext')).toBe('application/octet-stream');
  });
});
