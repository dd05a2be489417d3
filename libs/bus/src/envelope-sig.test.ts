import { randomBytes } from 'node:crypto';
import { clone, create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { AttachmentSchema, EnvelopeSchema, type Envelope } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { envelopeSignature, signEnvelope, verifyEnvelope } from './envelope-sig.js';

const key = randomBytes(32);

function signed(): Envelope {
  return signEnvelope(
    key,
    create(EnvelopeSchema, {
      messageId: 'm-1',
      sender: 'no-reply',
      client: 'billing',
      to: ['ada@campus.example'],
      bcc: ['audit@campus.example'],
      subject: 'Invoice',
      text: 'attached',
      attachments: [{ filename: 'a.csv', contentType: 'text/csv', content: new Uint8Array([1, 2, 3]) }],
      headers: { 'X-A': '1', 'X-B': '2' },
      submittedAt: timestampFromDate(new Date('2026-01-01T00:00:00Z')),
      attempt: 1,
      recipientCount: 2,
      sizeBytes: 100n,
    }),
  );
}

describe('envelope signature', () => {
  it('holds through what the scheduler and retries change: attempt, not_before, body_ref, header order', () => {
    const env = clone(EnvelopeSchema, signed());
    env.attempt = 3;
    env.notBefore = timestampFromDate(new Date());
    env.bodyRef = 'm-1';
    env.headers = { 'X-B': '2', 'X-A': '1' };
    expect(verifyEnvelope({ current: key }, env)).toBe(true);
  });

  it.each<[string, (e: Envelope) => void]>([
    ['a recipient', (e) => e.to.push('eve@elsewhere.example')],
    ['a Bcc moved to To', (e) => (e.to = [...e.to, ...e.bcc.splice(0)])],
    ['the sender', (e) => (e.sender = 'president')],
    ['the client', (e) => (e.client = 'other')],
    ['the text', (e) => (e.text = 'changed')],
    ['an attachment', (e) => (e.attachments[0]!.content = new Uint8Array([9]))],
    ['a header', (e) => (e.headers['X-A'] = 'evil')],
    ['the submission time', (e) => (e.submittedAt = timestampFromDate(new Date()))],
    ['the message id', (e) => (e.messageId = 'm-2')],
    ['the bytes of a message submitted over SMTP', (e) => (e.rawMime = new TextEncoder().encode('From: president@campus.example\r\n\r\nhi'))],
    ['an SMTP envelope recipient', (e) => e.envelopeTo.push('eve@elsewhere.example')],
    ['the SMTP envelope sender', (e) => (e.envelopeFrom = 'president@campus.example')],
  ])('fails when %s is changed', (_what, change) => {
    const env = clone(EnvelopeSchema, signed());
    change(env);
    expect(verifyEnvelope({ current: key }, env)).toBe(false);
  });

  it('fails without a signature or with another key, and accepts a previous key during a rotation', () => {
    const env = signed();
    expect(verifyEnvelope({ current: randomBytes(32) }, env)).toBe(false);
    expect(verifyEnvelope({ current: randomBytes(32), previous: [key] }, env)).toBe(true);
    env.ingestSig = new Uint8Array();
    expect(verifyEnvelope({ current: key }, env)).toBe(false);
  });
});

describe('envelope signature input', () => {
  // Fixed vectors: senders of one release check what ingest of the release before signed, so the
  // input's layout never changes without a new version tag.
  const fixed = (rawMime: Uint8Array) =>
    create(EnvelopeSchema, {
      messageId: 'm-1',
      sender: 'billing',
      client: 'app',
      to: ['a@b.example', 'ç@d.example'],
      cc: ['c@d.example'],
      replyTo: 'r@b.example',
      subject: 'Grüße',
      text: 'hi',
      html: '<p>hi</p>',
      attachments: [create(AttachmentSchema, { filename: 'a.txt', contentType: 'text/plain', content: new Uint8Array([1, 2, 3]) })],
      headers: { 'X-B': '2', 'X-A': '1' },
      sendAt: { seconds: 1700000000n, nanos: 5 },
      recipientCount: 3,
      sizeBytes: 1234n,
      rawMime,
      envelopeTo: ['a@b.example'],
      envelopeFrom: 'billing@b.example',
    });
  const key = Buffer.alloc(32, 7);

  it('is the same bytes as v1 has always signed, for small and large fields', () => {
    expect(envelopeSignature(key, fixed(new Uint8Array([65, 66]))).toString('hex')).toBe('d9f5d84a2bcf04f2e97fa2a2e2be91fd49d83311689adeac4c6934f131c1d75c');
    expect(envelopeSignature(key, fixed(new Uint8Array(40_000).map((_, i) => i % 251))).toString('hex')).toBe(
      '2956bb32d1c549bde711925e16b718bdee30472c9d93c27e9c1480d02927ccdb',
    );
  });
});
