import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { simpleParser, type AddressObject } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { describe, expect, it } from 'vitest';
import type { SenderConfig } from '@relay/config';
import { EnvelopeSchema, type Envelope } from '@relay/proto';
import { buildMessage } from './message.js';
import { buildRawMessage } from './raw-message.js';

const SUBMITTED = new Date('2026-11-23T10:11:12.345Z');
const sender: SenderConfig = {
  id: 'campus',
  pacingKey: 'campus',
  from: 'Campus No-Reply <no-reply@campus.example>',
  replyTo: undefined,
  transport: 'smtp',
  smtp: undefined,
  graph: undefined,
  rate: undefined,
};

function envelope(init: MessageInitShape<typeof EnvelopeSchema>): Envelope {
  return create(EnvelopeSchema, {
    messageId: '01JDX4TESTMESSAGE',
    sender: 'campus',
    submittedAt: timestampFromDate(SUBMITTED),
    attempt: 1,
    to: ['ada@students.campus.example'],
    subject: 'Hello',
    text: 'Hi Ada,\r\nsee you.\r\n',
    ...init,
  });
}

/** The message and envelope as nodemailer's SMTP transports see them (Bcc left out of the headers). */
async function compose(opts: Mail.Options) {
  const node = new MailComposer(opts).compile();
  return { message: (await node.build()).toString('latin1'), envelope: node.getEnvelope() };
}

function raw(env: Envelope, s: SenderConfig = sender): Mail.Options {
  const opts = buildRawMessage(env, s);
  if (!opts) throw new Error('expected the fast path to take this message');
  return opts;
}

/** Both ways of building `env`, with the multipart boundaries (random on both sides) replaced. */
async function both(env: Envelope, s: SenderConfig = sender) {
  const fast = await compose(raw(env, s));
  const composed = await compose(buildMessage(env, s));
  const unBoundary = (m: string) => {
    const b = /boundary="([^"]+)"/.exec(m)?.[1];
    return b ? m.split(b).join('BOUNDARY') : m;
  };
  // Without a submission time both take the current time, which may tick between the two.
  const clean = (m: string) => (env.submittedAt ? unBoundary(m) : unBoundary(m).replace(/^Date: .*$/m, 'Date: NOW'));
  return { fast: { ...fast, message: clean(fast.message) }, composed: { ...composed, message: clean(composed.message) } };
}

const headerBlock = (m: string) => m.slice(0, m.indexOf('\r\n\r\n'));
const addresses = (a: AddressObject | AddressObject[] | undefined) =>
  (Array.isArray(a) ? a : a ? [a] : []).flatMap((o) => o.value.map((v) => ({ name: v.name, address: v.address })));

describe('buildRawMessage', () => {
  const matrix: Array<[string, MessageInitShape<typeof EnvelopeSchema>, SenderConfig?]> = [
    ['text only', {}],
    ['html only', { text: '', html: '<p>Hi <b>Ada</b></p>' }],
    ['text and html', { html: '<html><body><p>Hi</p>\r\n</body></html>' }],
    ['text and html without final line breaks', { text: 'plain', html: '<p>html</p>' }],
    [
      'every address field',
      {
        to: ['Ada Student <ada@students.campus.example>', 'bob@students.campus.example'],
        cc: ['registrar@campus.example', '"Registrar, Office of" <office@campus.example>'],
        bcc: ['audit@campus.example'],
        replyTo: 'bursar@campus.example',
      },
    ],
    ['cc and bcc only', { to: [], cc: ['registrar@campus.example'], bcc: ['audit@campus.example'] }],
    ['bcc only', { to: [], bcc: ['audit@campus.example'] }],
    ['a recipient twice', { to: ['ada@students.campus.example'], cc: ['Ada <ada@students.campus.example>'], bcc: ['ada@students.campus.example'] }],
    ["sender's default reply-to", {}, { ...sender, replyTo: 'help@campus.example' }],
    ['a bare sender address', {}, { ...sender, from: 'no-reply@campus.example' }],
    [
      'custom headers',
      {
        headers: {
          'X-Campus-Ticket': 'INV-2024-0042',
          'list-unsubscribe': '<mailto:unsub@campus.example>',
          'x-mailer-id': 'a',
          'X-SPAM-SPF': 'pass',
          'dkim-thing': 'x',
          'X-Empty': '',
          'X-Blank': '   ',
        },
      },
    ],
    ['a long subject folded', { subject: 'A very long subject line that goes on and on and on beyond seventy-six characters, for sure' }],
    ['a subject of 76 characters folded', { subject: `${'x'.repeat(30)} ${'y'.repeat(35)}` }],
    ['a subject of 75 characters', { subject: `${'x'.repeat(30)} ${'y'.repeat(34)}` }],
    ['a long unbreakable subject', { subject: 'z'.repeat(120) }],
    ['a long custom header', { headers: { 'X-Long': 'word '.repeat(40).trim() } }],
    ['many recipients folded', { to: Array.from({ length: 12 }, (_, i) => `Student Number${i} <student${i}@students.campus.example>`) }],
    ['no subject', { subject: '' }],
    ['no submission time', { submittedAt: undefined }],
    ['dots at line starts', { text: '.\r\n..leading dots\r\n.\r\nend' }],
    ['uppercase domain', { to: ['Ada@Students.Campus.EXAMPLE'] }],
    ['atext in a local part', { to: ["o'brien+tag@campus.example", 'a!#$%&*/=?^_`{|}~-z@campus.example', 'first.last@campus.example'] }],
    [
      'names that need quotes',
      {
        to: [
          'Dr. Ada Lovelace <ada@campus.example>',
          "O'Brien <ob@campus.example>",
          '"Lovelace, Ada (Dr.)" <ada2@campus.example>',
          '"Campus IT" <it@campus.example>',
        ],
      },
    ],
    ['a line of 76 characters', { text: `${'a'.repeat(76)}\r\nshort\r\n` }],
  ];

  for (const [name, init, s] of matrix) {
    it(`writes the same message as nodemailer's composer: ${name}`, async () => {
      const env = envelope(init);
      const { fast, composed } = await both(env, s);
      expect(fast.message).toBe(composed.message);
      expect(fast.envelope).toEqual(composed.envelope);
    });
  }

  it("carries the trace context in a traceparent header both ways, in place of a caller's", async () => {
    const trace = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
    const env = envelope({ headers: { 'X-Campus-Ticket': 'T-1', TraceParent: '00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01' } });
    const fastOpts = buildRawMessage(env, sender, trace);
    if (!fastOpts) throw new Error('expected the fast path to take this message');
    const fast = await compose(fastOpts);
    const composed = await compose(buildMessage(env, sender, trace));
    expect(fast.message).toBe(composed.message);
    expect(headerBlock(fast.message)).toMatch(/^Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01$/m);
    expect(fast.message).not.toContain('ffffffff');
  });

  it('reads back with mailparser field by field', async () => {
    const env = envelope({
      to: ['Ada Student <ada@students.campus.example>', 'bob@students.campus.example'],
      cc: ['"Registrar, Office of" <office@campus.example>'],
      bcc: ['audit@campus.example'],
      replyTo: 'bursar@campus.example',
      subject: 'Your invoice for the spring term',
      text: 'Please find your invoice.\nSecond line\rthird line\r\n.dot line\r\n',
      html: '<p>Please find your <b>invoice</b>.</p>',
      headers: { 'X-Campus-Ticket': 'INV-2024-0042' },
    });
    const opts = raw(env);
    expect(opts.envelope).toEqual({
      from: 'no-reply@campus.example',
      to: ['ada@students.campus.example', 'bob@students.campus.example', 'office@campus.example', 'audit@campus.example'],
    });
    const text = (opts.raw as Buffer).toString('latin1');
    expect(text).not.toContain('audit@campus.example');
    expect(text).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
    const p = await simpleParser(opts.raw as Buffer);
    expect(p.from?.value).toEqual([{ address: 'no-reply@campus.example', name: 'Campus No-Reply' }]);
    expect(addresses(p.to)).toEqual([
      { name: 'Ada Student', address: 'ada@students.campus.example' },
      { name: '', address: 'bob@students.campus.example' },
    ]);
    expect(addresses(p.cc)).toEqual([{ name: 'Registrar, Office of', address: 'office@campus.example' }]);
    expect(p.bcc).toBeUndefined();
    expect(addresses(p.replyTo)).toEqual([{ name: '', address: 'bursar@campus.example' }]);
    expect(p.subject).toBe('Your invoice for the spring term');
    expect(p.messageId).toBe('<01JDX4TESTMESSAGE@campus.example>');
    expect(p.date?.getTime()).toBe(Math.floor(SUBMITTED.getTime() / 1000) * 1000);
    expect(p.headers.get('mime-version')).toBe('1.0');
    expect(p.headers.get('x-campus-ticket')).toBe('INV-2024-0042');
    expect(p.headers.get('x-relay-message-id')).toBe('01JDX4TESTMESSAGE');
    expect(p.text).toBe('Please find your invoice.\nSecond line\nthird line\n.dot line\n');
    expect(p.html).toBe('<p>Please find your <b>invoice</b>.</p>');
    expect(p.attachments).toEqual([]);
  });

  it('sends lines up to 998 octets as 7bit, where the composer switches to quoted-printable', async () => {
    const line = 'x'.repeat(998);
    const env = envelope({ text: `${line}\r\nend\r\n`, html: `<p>${'y'.repeat(990)}</p>` });
    const opts = raw(env);
    const fast = await simpleParser(opts.raw as Buffer);
    const composed = await simpleParser((await compose(buildMessage(env, sender))).message);
    expect(fast.text).toBe(composed.text);
    expect(fast.html).toBe(composed.html);
    expect((opts.raw as Buffer).toString('latin1')).not.toContain('quoted-printable');
  });

  it('leaves everything else to the composer', () => {
    const fallbacks: Array<[string, MessageInitShape<typeof EnvelopeSchema>, SenderConfig?]> = [
      ['non-ASCII subject', { subject: 'Grüße' }],
      ['non-ASCII text', { text: 'naïve' }],
      ['non-ASCII html', { html: '<p>€</p>' }],
      ['control characters in the text', { text: 'bell\u0007' }],
      ['a line over 998 octets', { text: 'x'.repeat(999) }],
      ['an encoded word in the subject', { subject: '=?utf-8?q?hi?=' }],
      ['a quote in the subject', { subject: 'the "best" offer' }],
      ['non-ASCII display name', { to: ['Jürgen <j@campus.example>'] }],
      ['non-ASCII local part', { to: ['jürgen@campus.example'] }],
      ['internationalised domain', { to: ['j@jõgeva.example'] }],
      ['punycode domain', { to: ['j@xn--jgeva-dua.example'] }],
      ['address literal', { to: ['j@[192.0.2.1]'] }],
      ['numeric last label', { to: ['j@192.0.2.1'] }],
      ['quoted local part', { to: ['"j smith"@campus.example'] }],
      ['display name with two spaces', { to: ['"Ada  Lovelace" <ada@campus.example>'] }],
      ['display name with a backslash', { to: ['"Ada \\\\ L" <ada@campus.example>'] }],
      ['non-ASCII bcc', { bcc: ['jürgen@campus.example'] }],
      ['non-ASCII reply-to', { replyTo: 'Jürgen <j@campus.example>' }],
      ['non-ASCII header value', { headers: { 'X-Note': 'café' } }],
      ['a header nodemailer composes itself', { headers: { 'In-Reply-To': '<a@b>' } }],
      ['our own id header', { headers: { 'x-relay-message-id': 'spoof' } }],
      ['attachments', { attachments: [{ filename: 'a.txt', contentType: 'text/plain', content: new TextEncoder().encode('hi') }] }],
      ['no body', { text: '', html: '' }],
      ['non-ASCII sender name', {}, { ...sender, from: 'Universität <no-reply@campus.example>' }],
    ];
    for (const [name, init, s] of fallbacks) expect(buildRawMessage(envelope(init), s ?? sender), name).toBeUndefined();
  });

  it('composes the fallback cases correctly (non-ASCII through nodemailer)', async () => {
    const env = envelope({ to: ['Jürgen Groß <j@jõgeva.example>'], subject: 'Grüße', text: 'naïve €', html: '<p>€</p>' });
    expect(buildRawMessage(env, sender)).toBeUndefined();
    const composed = await compose(buildMessage(env, sender));
    const p = await simpleParser(composed.message);
    expect(p.subject).toBe('Grüße');
    expect(p.text?.trim()).toBe('naïve €');
    expect(addresses(p.to)).toEqual([{ name: 'Jürgen Groß', address: 'j@jõgeva.example' }]);
    expect(headerBlock(composed.message)).toMatch(/^To: =\?UTF-8\?Q\?J=C3=BCrgen_Gro=C3=9F\?= <j@xn--jgeva-dua\.example>$/m);
    expect(headerBlock(composed.message)).toMatch(/^Subject: =\?UTF-8\?Q\?Gr=C3=BC=C3=9Fe\?=$/m);
  });
});
