import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { SendMailRequestSchema, type SendMailRequest } from '@relay/proto';
import { parseAddress } from './address.js';
import { validateSendMail, type MessageLimits } from './validate.js';

const limits: MessageLimits = { maxMessageBytes: 1024 * 1024 };
const req = (over: MessageInitShape<typeof SendMailRequestSchema> = {}) =>
  create(SendMailRequestSchema, { sender: 's', to: ['a@campus.example'], subject: 'Hi', text: 'hello', ...over });

function reason(r: SendMailRequest, l = limits): string {
  try {
    validateSendMail(r, l);
  } catch (err) {
    return (err as Error).message;
  }
  return 'valid';
}

describe('parseAddress', () => {
  it.each([
    ['a@campus.example', 'a@campus.example', ''],
    ['first.last+tag@sub.campus.example', 'first.last+tag@sub.campus.example', ''],
    ['Registrar <registrar@campus.example>', 'registrar@campus.example', 'Registrar'],
    ['"Office, Registrar" <registrar@campus.example>', 'registrar@campus.example', 'Office, Registrar'],
    ['"odd local"@campus.example', '"odd local"@campus.example', ''],
    ['user@[192.0.2.1]', 'user@[192.0.2.1]', ''],
    ['jürgen@universität.example', 'jürgen@universität.example', ''],
  ])('accepts %s', (input, address, name) => {
    expect(parseAddress(input)).toEqual({ address, name });
  });
  it.each([
    ['', /must not be empty/],
    ['plainaddress', /not an email address/],
    ['@campus.example', /not an email address/],
    ['a@', /not an email address/],
    ['a..b@campus.example', /invalid local part/],
    ['.a@campus.example', /invalid local part/],
    ['a@-bad.example', /invalid domain/],
    ['a@bad..example', /invalid domain/],
    ['a@campus.example\r\nBcc: victim@x.example', /line breaks/],
    ['Name <a@campus.example', /unbalanced angle brackets/],
    ['Office, Registrar <r@campus.example>', /put it in double quotes/],
    [`${'x'.repeat(65)}@campus.example`, /longer than 64/],
    ['user@[999.1.1.1]', /invalid address literal/],
  ])('refuses %j', (input, re) => {
    expect(parseAddress(input)).toMatch(re);
  });
});

describe('validateSendMail', () => {
  it('accepts a plain message and counts recipients and size', () => {
    // "Hi" + "hello" + the three addresses (16 bytes each).
    expect(validateSendMail(req({ cc: ['b@campus.example'], bcc: ['c@campus.example'] }), limits)).toEqual({ recipients: 3, size: 7 + 48 });
  });
  it('names the field that is wrong', () => {
    expect(reason(req({ to: [] }))).toMatch(/^to: at least one recipient/);
    expect(reason(req({ bcc: ['ok@campus.example', 'broken'] }))).toMatch(/^bcc\[1\]: /);
    expect(reason(req({ replyTo: 'nope' }))).toMatch(/^reply_to: /);
    expect(reason(req({ subject: 'Hi\r\nBcc: x@y.example' }))).toMatch(/^subject: must not contain line breaks/);
    expect(reason(req({ headers: { 'X-Ok': 'fine\nInjected: yes' } }))).toMatch(/^headers\["X-Ok"\]: value must not contain line breaks or control characters/);
    expect(reason(req({ headers: { 'Bad Name': 'x' } }))).toMatch(/^headers\["Bad Name"\]: is not a valid header name/);
    expect(reason(req({ headers: { From: 'boss@campus.example' } }))).toMatch(/^headers\["From"\]: is set by the relay/);
    expect(reason(req({ attachments: [{ filename: '', contentType: 'text/plain', content: new Uint8Array(1) } as never] }))).toMatch(
      /^attachments\[0\]\.filename: is required/,
    );
    expect(reason(req({ attachments: [{ filename: 'a.txt', contentType: 'not a type', content: new Uint8Array(1) } as never] }))).toMatch(
      /^attachments\[0\]\.content_type: /,
    );
    expect(reason(req({ idempotencyKey: 'k'.repeat(300) }))).toMatch(/^idempotency_key: /);
    expect(reason(req({ sendAt: timestampFromDate(new Date(Date.now() + 31 * 86_400_000)) }))).toMatch(/^send_at: is more than 30 days ahead/);
    expect(reason(req({ to: ['a@x.example', 'b@x.example', 'c@x.example'] }), { ...limits, maxRecipientsPerMessage: 2 })).toMatch(
      /^to: 3 recipients exceed this sender's limit of 2/,
    );
  });
  it('refuses a recipient list over the default of 500 per message', () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => `r${i}@campus.example`);
    expect(reason(req({ to: many(250), bcc: many(251) }))).toMatch(/^to: 501 recipients exceed this sender's limit of 500/);
    expect(reason(req({ to: many(500) }))).toBe('valid');
    expect(reason(req({ to: many(600) }), { ...limits, maxRecipientsPerMessage: 1000 })).toBe('valid');
  });
  it('counts recipients in the size limit', () => {
    const to = Array.from({ length: 400 }, (_, i) => `${'r'.repeat(40)}${i}@campus.example`);
    expect(reason(req({ to }), { maxMessageBytes: 10 * 1024 })).toMatch(/^attachments: the message is \d+ KB, over the limit of 10 KB/);
  });
  it('takes only the headers a caller may set', () => {
    for (const name of ['X-Campus-Ticket', 'In-Reply-To', 'References', 'List-Unsubscribe', 'List-Unsubscribe-Post', 'Auto-Submitted', 'Precedence']) {
      expect(reason(req({ headers: { [name]: '<a@campus.example>' } }))).toBe('valid');
    }
    for (const name of [
      'Received',
      'Authentication-Results',
      'DKIM-Signature',
      'ARC-Seal',
      'ARC-Authentication-Results',
      'Resent-From',
      'Return-Path',
      'Content-Disposition',
      'Content-ID',
      'X-MS-Exchange-Organization-SCL',
    ]) {
      expect(reason(req({ headers: { [name]: 'x' } }))).toMatch(new RegExp(`^headers\\["${name}"\\]: is (a trace|set by the relay)`));
    }
    expect(reason(req({ headers: { Sender: 'boss@campus.example' } }))).toMatch(/^headers\["Sender"\]: is set by the relay/);
    expect(reason(req({ headers: { 'Disposition-Notification-To': 'x@y.example' } }))).toMatch(
      /^headers\["Disposition-Notification-To"\]: may not be set by a caller \(allowed: X-\*/,
    );
  });
  it('refuses control characters in every field that reaches a header', () => {
    const file = (over: object) => ({ filename: 'a.txt', contentType: 'text/plain', content: new Uint8Array(1), ...over }) as never;
    expect(reason(req({ subject: 'Hi\u0000there' }))).toMatch(/^subject: must not contain line breaks or control characters/);
    expect(reason(req({ subject: 'Hi\u2028Bcc: x@y.example' }))).toMatch(/^subject: /);
    expect(reason(req({ to: ['"Eve\rBcc: x@y.example" <a@campus.example>'] }))).toMatch(/^to\[0\]: must not contain/);
    expect(reason(req({ replyTo: 'a@campus.example\nBcc: x@y.example' }))).toMatch(/^reply_to: must not contain/);
    expect(reason(req({ headers: { 'X-Note': 'a\u0007b' } }))).toMatch(/^headers\["X-Note"\]: value must not contain/);
    expect(reason(req({ attachments: [file({ filename: 'a\u001b.txt' })] }))).toMatch(/^attachments\[0\]\.filename: must not contain/);
    expect(reason(req({ attachments: [file({ contentType: 'text/plain\r\nBcc: x@y.example' })] }))).toMatch(
      /^attachments\[0\]\.content_type: must not contain/,
    );
    expect(reason(req({ attachments: [file({ contentType: 'text/plain; name="a\r\nb"' })] }))).toMatch(/^attachments\[0\]\.content_type: must not contain/);
    expect(reason(req({ attachments: [file({ contentType: 'text/plain; charset=utf-8' })] }))).toBe('valid');
    expect(reason(req({ subject: 'Tab\tis fine', headers: { 'X-Note': 'café' } }))).toBe('valid');
  });
  it('enforces the total size limit', () => {
    const big = { filename: 'big.bin', contentType: 'application/octet-stream', content: new Uint8Array(2 * 1024 * 1024) };
    expect(reason(req({ attachments: [big as never] }))).toMatch(/^attachments: the message is 2\.0 MB, over the limit of 1\.0 MB/);
    expect(reason(req({ attachments: [big as never] }), { maxMessageBytes: 3 * 1024 * 1024 })).toBe('valid');
  });
  it('accepts send_at in the past or within 30 days', () => {
    expect(reason(req({ sendAt: timestampFromDate(new Date(Date.now() - 1000)) }))).toBe('valid');
    expect(reason(req({ sendAt: timestampFromDate(new Date(Date.now() + 29 * 86_400_000)) }))).toBe('valid');
  });
});
