import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpServer, testCa, type TestSmtpServer } from '@relay/testkit';
import { sendRaw, type RawMail } from './send-raw.js';

const USER = 'relay@campus.example';
const PASSWORD = 'app-password';

function rawMail(subject: string, body: string, to = ['ada@students.campus.example']): RawMail {
  const raw = Buffer.from(
    `From: relay@campus.example\r\nTo: ${to.join(', ')}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@campus.example>\r\n\r\n${body}`,
    'latin1',
  );
  return { envelope: { from: 'relay@campus.example', to }, raw, messageId: `<${subject}@campus.example>` };
}

describe('sendRaw over a pooled nodemailer transport to a real SMTP server (STARTTLS, AUTH)', () => {
  let server: TestSmtpServer;
  let pool: Transporter<SMTPPool.SentMessageInfo, SMTPPool.Options>;
  beforeAll(async () => {
    server = await startSmtpServer({
      security: 'starttls',
      users: { [USER]: PASSWORD },
      reply: (ctx) => (ctx.phase === 'rcpt' && ctx.rcpt.startsWith('gone@') ? { code: 550, message: '5.1.1 No such user' } : undefined),
    });
    pool = nodemailer.createTransport({
      host: server.host,
      port: server.port,
      requireTLS: true,
      tls: { ca: testCa().caPem, servername: 'localhost' },
      auth: { user: USER, pass: PASSWORD },
      pool: true,
      maxConnections: 2,
    } as SMTPPool.Options);
  });
  afterAll(async () => {
    pool?.close();
    await server?.close();
  });

  it('delivers the bytes as given (dot-stuffed on the wire), to the envelope recipients, and returns the reply', async () => {
    const body = 'Hi Ada,\r\n.a line starting with a dot\r\n.\r\nend\r\n';
    const mail = rawMail('first', body, ['ada@students.campus.example', 'bob@students.campus.example']);
    const info = await sendRaw(pool, mail);
    expect(info.response).toMatch(/^250 /);
    expect(info.accepted).toEqual(['ada@students.campus.example', 'bob@students.campus.example']);
    const [got] = await server.waitForMessages(1);
    expect(got!.raw.equals(mail.raw)).toBe(true);
    expect(got!.envelope).toEqual({ from: 'relay@campus.example', to: ['ada@students.campus.example', 'bob@students.campus.example'] });
    expect(got!.secure).toBe(true);
    expect(got!.user).toBe(USER);
  });

  it('asks for BODY=8BITMIME when the envelope says the message has 8-bit bytes', async () => {
    const before = server.messages.length;
    const mail = rawMail('eight', 'x\r\n');
    await sendRaw(pool, { ...mail, raw: Buffer.from(`${mail.raw.toString('latin1')}Grüße\r\n`, 'utf8'), envelope: { ...mail.envelope, use8BitMime: true } });
    await sendRaw(pool, rawMail('seven', 'plain\r\n'));
    const [eight, seven] = (await server.waitForMessages(before + 2)).slice(before);
    expect(eight!.mailFromArgs).toMatchObject({ BODY: '8BITMIME' });
    expect(seven!.mailFromArgs).not.toHaveProperty('BODY');
  });

  it('sends many over the pool without mixing them up', async () => {
    const before = server.messages.length;
    const mails = Array.from({ length: 20 }, (_, i) => rawMail(`many-${i}`, `message ${i}\r\n`));
    await Promise.all(mails.map((m) => sendRaw(pool, m)));
    const got = (await server.waitForMessages(before + 20)).slice(before);
    expect(got.map((m) => m.raw.toString('latin1')).sort()).toEqual(mails.map((m) => m.raw.toString('latin1')).sort());
  });

  it("fails with the server's reply when it refuses, and the pool keeps working", async () => {
    const err = await sendRaw(pool, rawMail('refused', 'x\r\n', ['gone@students.campus.example'])).catch((e: unknown) => e);
    expect(err).toMatchObject({ responseCode: 550 });
    expect(String((err as Error).message)).toContain('5.1.1 No such user');
    await expect(sendRaw(pool, rawMail('after', 'y\r\n'))).resolves.toMatchObject({ response: expect.stringMatching(/^250 /) });
  });
});
