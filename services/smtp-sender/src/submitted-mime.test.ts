import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { EnvelopeSchema } from '@relay/proto';
import { submittedMail } from './submitted-mime.js';

describe('submittedMail', () => {
  it('is the submitted bytes with the trace header and relay id in front, to the envelope recipients', () => {
    const raw = Buffer.from('From: a@campus.example\r\nMessage-ID: <m-1@app>\r\nBcc-less: yes\r\n\r\nbody\r\n');
    const env = create(EnvelopeSchema, {
      messageId: 'id-1',
      rawMime: raw,
      envelopeFrom: 'a@campus.example',
      envelopeTo: ['x@example.test', 'hidden@example.test'],
    });
    const mail = submittedMail(env, { traceparent: '00-abc-def-01' })!;
    expect(mail.envelope).toEqual({ from: 'a@campus.example', to: ['x@example.test', 'hidden@example.test'] });
    expect(mail.raw.toString()).toBe(`traceparent: 00-abc-def-01\r\nX-Relay-Message-ID: id-1\r\n${raw.toString()}`);
    expect(mail.messageId).toBe('<m-1@app>');
  });

  it('asks for BODY=8BITMIME when the message has 8-bit bytes', () => {
    const eightBit = create(EnvelopeSchema, { messageId: 'id-3', rawMime: Buffer.from('Subject: Grüße\r\n\r\nÄ\r\n'), envelopeTo: ['x@example.test'] });
    expect(submittedMail(eightBit)!.envelope.use8BitMime).toBe(true);
    const ascii = create(EnvelopeSchema, { messageId: 'id-4', rawMime: Buffer.from('Subject: hi\r\n\r\nx\r\n'), envelopeTo: ['x@example.test'] });
    expect(submittedMail(ascii)!.envelope.use8BitMime).toBeUndefined();
  });

  it('leaves a message composed from fields to the composer', () => {
    expect(submittedMail(create(EnvelopeSchema, { messageId: 'id-2', text: 'hi' }))).toBeUndefined();
  });
});
