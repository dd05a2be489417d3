import { create } from '@bufbuild/protobuf';
import type { SenderConfig } from '@relay/config';
import { uuidv7 } from '@relay/core';
import { parseDeliveryReport } from '@relay/mail';
import { EnvelopeSchema } from '@relay/proto';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { describe, expect, it } from 'vitest';
import { buildMessage } from './message.js';
import { buildRawMessage } from './raw-message.js';
import { submittedMail } from './submitted-mime.js';

const sender = { id: 'registrar', pacingKey: 'registrar', from: 'Registrar <registrar@campus.example>', transport: 'smtp' } as SenderConfig;

/** A Postfix bounce returning `original` whole (message/rfc822) or its headers only (text/rfc822-headers). */
function bounce(original: string, part: 'message/rfc822' | 'text/rfc822-headers', recipient: string): Buffer {
  const returned = part === 'message/rfc822' ? original : original.slice(0, original.search(/\r?\n\r?\n/));
  return Buffer.from(
    [
      'From: MAILER-DAEMON@mx.campus.example (Mail Delivery System)',
      'To: registrar@campus.example',
      'Subject: Undelivered Mail Returned to Sender',
      'Message-Id: <20261205.ABC@mx.campus.example>',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=delivery-status; boundary="B"',
      '',
      '--B',
      'Content-Type: text/plain',
      '',
      'Your message could not be delivered.',
      '--B',
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.campus.example',
      '',
      `Final-Recipient: rfc822; ${recipient}`,
      'Action: failed',
      'Status: 5.1.1',
      'Diagnostic-Code: smtp; 550 5.1.1 User unknown',
      '',
      '--B',
      `Content-Type: ${part}`,
      '',
      returned,
      '--B--',
      '',
    ].join('\r\n'),
  );
}

describe("delivery reports match the relay's outgoing mail", () => {
  const env = (init = {}) =>
    create(EnvelopeSchema, { messageId: uuidv7(), sender: 'registrar', to: ['gone@students.campus.example'], subject: 'Hi', text: 'Hello\r\n', ...init });

  it('as composed directly (raw-message), returned whole or as headers only', async () => {
    const e = env();
    const raw = buildRawMessage(e, sender)!.raw.toString('latin1');
    for (const part of ['message/rfc822', 'text/rfc822-headers'] as const) {
      expect((await parseDeliveryReport(bounce(raw, part, 'gone@students.campus.example')))?.relayMessageId).toBe(e.messageId);
    }
  });

  it('as composed by nodemailer (attachments), and as submitted over the SMTP door', async () => {
    const e = env({ attachments: [{ filename: 'a.txt', content: Buffer.from('x') }] });
    const composed = (await new MailComposer(buildMessage(e, sender)).compile().build()).toString('latin1');
    expect((await parseDeliveryReport(bounce(composed, 'text/rfc822-headers', 'gone@students.campus.example')))?.relayMessageId).toBe(e.messageId);

    const door = env({
      rawMime: Buffer.from(
        'From: registrar@campus.example\r\nTo: gone@students.campus.example\r\nMessage-ID: <client-1@app.campus.example>\r\nSubject: Hi\r\n\r\nHello\r\n',
      ),
      envelopeTo: ['gone@students.campus.example'],
      envelopeFrom: 'registrar@campus.example',
    });
    const submitted = submittedMail(door)!.raw.toString('latin1');
    expect((await parseDeliveryReport(bounce(submitted, 'text/rfc822-headers', 'gone@students.campus.example')))?.relayMessageId).toBe(door.messageId);
  });
});
