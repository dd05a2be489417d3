import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { parseConfig, type SenderConfig } from '@relay/config';
import { isDeliveryError } from '@relay/core';
import { AttachmentSchema, EnvelopeSchema, type Envelope } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { buildGraphMessage, MAX_REQUEST_BYTES, planDelivery, uploadRanges, UPLOAD_CHUNK_BYTES } from './graph-message.js';

function sender(extra = ''): SenderConfig {
  const text = `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: registrar
    from: "Registrar <registrar@campus.example>"
    transport: graph
${extra}    graph: { tenant_id: t, client_id: c, client_secret: s, mailbox: registrar@campus.example }
`;
  return parseConfig(text, {}).senders[0]!;
}

function envelope(init: MessageInitShape<typeof EnvelopeSchema> = {}): Envelope {
  return create(EnvelopeSchema, { messageId: 'm-1', sender: 'registrar', to: ['Ada <ada@students.campus.example>'], subject: 'Hello', text: 'plain', ...init });
}

const file = (name: string, bytes: number) => create(AttachmentSchema, { filename: name, contentType: 'application/pdf', content: new Uint8Array(bytes) });

describe('buildGraphMessage', () => {
  it('keeps From, names, every recipient list, the default Reply-To and x- headers plus the relay id', () => {
    const m = buildGraphMessage(
      envelope({ cc: ['cc@campus.example'], bcc: ['bcc@campus.example'], headers: { 'X-Ticket': '42' } }),
      sender('    reply_to: help@campus.example\n'),
    );
    expect(m.from).toEqual({ emailAddress: { address: 'registrar@campus.example', name: 'Registrar' } });
    expect(m.toRecipients).toEqual([{ emailAddress: { address: 'ada@students.campus.example', name: 'Ada' } }]);
    expect(m.ccRecipients).toEqual([{ emailAddress: { address: 'cc@campus.example' } }]);
    expect(m.bccRecipients).toEqual([{ emailAddress: { address: 'bcc@campus.example' } }]);
    expect(m.replyTo).toEqual([{ emailAddress: { address: 'help@campus.example' } }]);
    expect(m.internetMessageHeaders).toEqual([
      { name: 'X-Ticket', value: '42' },
      { name: 'X-Relay-Message-Id', value: 'm-1' },
    ]);
    expect(m.body).toEqual({ contentType: 'Text', content: 'plain' });
  });

  it('carries the trace context as x-traceparent, replacing one the caller put in', () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const m = buildGraphMessage(envelope({ headers: { 'X-Traceparent': 'stale' } }), sender(''), traceparent);
    expect(m.internetMessageHeaders).toEqual([
      { name: 'X-Relay-Message-Id', value: 'm-1' },
      { name: 'x-traceparent', value: traceparent },
    ]);
  });

  it("prefers the message's Reply-To and its HTML body", () => {
    const m = buildGraphMessage(envelope({ replyTo: 'office@campus.example', html: '<p>hi</p>' }), sender('    reply_to: help@campus.example\n'));
    expect(m.replyTo).toEqual([{ emailAddress: { address: 'office@campus.example' } }]);
    expect(m.body).toEqual({ contentType: 'HTML', content: '<p>hi</p>' });
  });

  it('fails a message with a header Graph cannot carry, naming it, instead of leaving it out', () => {
    let err: unknown;
    try {
      buildGraphMessage(envelope({ headers: { 'List-Unsubscribe': '<mailto:u@campus.example>', 'X-Ok': '1' } }), sender());
    } catch (e) {
      err = e;
    }
    expect(isDeliveryError(err) && !err.retryable).toBe(true);
    expect((err as Error).message).toMatch(/^UnsupportedInternetMessageHeader: "List-Unsubscribe" cannot be sent/);
    expect((err as { remedy?: string }).remedy).toMatch(/x-/);
  });
});

describe('planDelivery', () => {
  const message = buildGraphMessage(envelope(), sender());
  it('sends small mail, attachments included, in one sendMail', () => {
    expect(planDelivery(message, [file('a.pdf', 1_000_000), file('b.pdf', 1_500_000)])).toMatchObject({ kind: 'sendMail' });
  });
  it('uses a draft once the request would pass 4 MB: large files by upload session, small ones in the draft or posted', () => {
    const plan = planDelivery(message, [file('big.pdf', 5 * 1024 * 1024), file('a.pdf', 2_000_000), file('b.pdf', 2_000_000)]);
    expect(plan.kind).toBe('draft');
    if (plan.kind !== 'draft') return;
    expect(plan.uploaded.map((a) => a.filename)).toEqual(['big.pdf']);
    expect(plan.withDraft.map((a) => a.filename)).toEqual(['a.pdf']);
    expect(plan.posted.map((a) => a.filename)).toEqual(['b.pdf']);
  });
  it('refuses an attachment over 150 MB as final', () => {
    expect(() => planDelivery(message, [{ ...file('x', 0), content: { byteLength: 151 * 1024 * 1024 } as Uint8Array }])).toThrow(/up to 150 MB/);
  });
});

describe('uploadRanges', () => {
  it('covers the file in chunks of at most 4 MB, all but the last a multiple of 320 KiB', () => {
    const size = 30 * 1024 * 1024 + 7;
    const ranges = uploadRanges(size);
    expect(ranges[0]!.start).toBe(0);
    expect(ranges.at(-1)!.end).toBe(size - 1);
    for (let i = 0; i < ranges.length; i++) {
      const len = ranges[i]!.end - ranges[i]!.start + 1;
      expect(len).toBeLessThanOrEqual(MAX_REQUEST_BYTES);
      if (i < ranges.length - 1) {
        expect(len % (320 * 1024)).toBe(0);
        expect(ranges[i + 1]!.start).toBe(ranges[i]!.end + 1);
      }
    }
    expect(UPLOAD_CHUNK_BYTES).toBe(3_932_160);
  });
  it('refuses a chunk size Graph would not take', () => {
    expect(() => uploadRanges(10, 1_000_000)).toThrow(/320 KiB/);
  });
});
