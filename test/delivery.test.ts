import { randomBytes } from 'node:crypto';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { connectBus } from '@relay/bus';
import { MessageState } from '@relay/proto';
import {
  clientEntry,
  FAST_DELIVERY,
  historyStates,
  newClient,
  type ReceivedMail,
  smtpSender,
  type Stack,
  startSmtpServer,
  startStack,
  type TestClient,
  testNatsUrl,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SMTP_USER = 'no-reply@campus.example';
const SMTP_PASSWORD = 'correct horse battery staple';

let starttls: TestSmtpServer;
let implicitTls: TestSmtpServer;
let stack: Stack;
let client: TestClient;

const app = newClient('billing-app', ['no-reply', 'tls-sender']);

beforeAll(async () => {
  starttls = await startSmtpServer({ security: 'starttls', users: { [SMTP_USER]: SMTP_PASSWORD } });
  implicitTls = await startSmtpServer({ security: 'tls', users: { [SMTP_USER]: SMTP_PASSWORD } });
  stack = await startStack({
    label: 'delivery',
    config: {
      clients: [clientEntry(app)],
      senders: [
        smtpSender({
          id: 'no-reply',
          from: 'Campus No-Reply <no-reply@campus.example>',
          replyTo: 'help@campus.example',
          server: starttls,
          auth: { user: SMTP_USER, password: SMTP_PASSWORD },
        }),
        smtpSender({ id: 'tls-sender', security: 'tls', server: implicitTls, auth: { user: SMTP_USER, password: SMTP_PASSWORD } }),
      ],
      delivery: FAST_DELIVERY,
    },
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([starttls?.close(), implicitTls?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

type Addresses = ReceivedMail['parsed']['to'];
const addresses = (a: Addresses) => (Array.isArray(a) ? a : a ? [a] : []).flatMap((o) => o.value.map((v) => v.address));

describe('delivery over SMTP', () => {
  it('delivers every field of a message over STARTTLS with AUTH and reports SENT with its history', async () => {
    const attachment = Buffer.from('id,amount\n1,42.00\n2,17.50\n');
    const started = Date.now();
    const res = await client.sendMail({
      sender: 'no-reply',
      to: ['Ada Student <ada@students.campus.example>', 'bob@students.campus.example'],
      cc: ['registrar@campus.example'],
      bcc: ['audit@campus.example'],
      replyTo: 'bursar@campus.example',
      subject: 'Your invoice for the spring term',
      text: 'Please find your invoice attached.',
      html: '<p>Please find your <b>invoice</b> attached.</p>',
      attachments: [{ filename: 'invoice.csv', contentType: 'text/csv', content: attachment }],
      headers: { 'X-Campus-Ticket': 'INV-2024-0042' },
    });
    expect(res.state).toBe(MessageState.QUEUED);
    expect(res.messageId).toMatch(/^[A-Za-z0-9-]+$/);

    const mail = await waitForMail(starttls, res.messageId);
    expect(mail.envelope.to.sort()).toEqual(
      ['ada@students.campus.example', 'bob@students.campus.example', 'registrar@campus.example', 'audit@campus.example'].sort(),
    );
    expect(mail.envelope.from).toBe('no-reply@campus.example');
    expect(mail.secure).toBe(true);
    expect(mail.user).toBe(SMTP_USER);

    const p = mail.parsed;
    expect(addresses(p.to)).toEqual(['ada@students.campus.example', 'bob@students.campus.example']);
    expect(addresses(p.cc)).toEqual(['registrar@campus.example']);
    expect(p.bcc).toBeUndefined();
    expect(p.headers.has('bcc')).toBe(false);
    expect(mail.raw.toString('latin1')).not.toContain('audit@campus.example');
    expect(p.from?.value).toEqual([{ address: 'no-reply@campus.example', name: 'Campus No-Reply' }]);
    expect(addresses(p.replyTo)).toEqual(['bursar@campus.example']);
    expect(p.subject).toBe('Your invoice for the spring term');
    expect(p.text?.trim()).toBe('Please find your invoice attached.');
    expect(p.html).toContain('<p>Please find your <b>invoice</b> attached.</p>');
    expect(p.attachments).toHaveLength(1);
    expect(p.attachments[0]!.filename).toBe('invoice.csv');
    expect(p.attachments[0]!.contentType).toBe('text/csv');
    expect(Buffer.compare(p.attachments[0]!.content, attachment)).toBe(0);
    expect(p.headers.get('x-campus-ticket')).toBe('INV-2024-0042');

    const status = await waitForState(client, res.messageId, [MessageState.SENT]);
    expect(status.messageId).toBe(res.messageId);
    expect(status.sender).toBe('no-reply');
    expect(status.attempts).toBe(1);
    expect(status.lastError).toBe('');
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'SENT']);
    const times = status.history.map((h) => timestampDate(h.at!).getTime());
    for (const t of times) {
      expect(t).toBeGreaterThanOrEqual(started - 1_000);
      expect(t).toBeLessThanOrEqual(Date.now() + 1_000);
    }
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    // The SENT entry carries the server's own reply.
    expect(status.history.at(-1)!.detail).toMatch(/^250/);
  });

  it("uses the sender's default Reply-To when the request has none", async () => {
    const res = await client.sendMail({ sender: 'no-reply', to: ['carol@students.campus.example'], subject: 'Default reply-to', text: 'hi' });
    const mail = await waitForMail(starttls, res.messageId);
    expect(addresses(mail.parsed.replyTo)).toEqual(['help@campus.example']);
    expect(mail.parsed.from?.value[0]?.address).toBe('no-reply@campus.example');
    expect(mail.parsed.bcc).toBeUndefined();
  });

  it('delivers a 5 MB attachment intact, carried through the body object store', async () => {
    const big = randomBytes(5 * 1024 * 1024);
    const res = await client.sendMail(
      {
        sender: 'no-reply',
        to: ['archive@campus.example'],
        subject: 'Large scan',
        text: 'scan attached',
        attachments: [{ filename: 'scan.bin', contentType: 'application/octet-stream', content: big }],
      },
      { deadlineMs: 30_000 },
    );
    const mail = await waitForMail(starttls, res.messageId, 30_000);
    const got = mail.parsed.attachments[0];
    expect(got?.filename).toBe('scan.bin');
    expect(got?.content.length).toBe(big.length);
    expect(Buffer.compare(got!.content, big)).toBe(0);
    const status = await waitForState(client, res.messageId, [MessageState.SENT]);
    expect(status.attempts).toBe(1);

    // Larger than a broker message: it went through the object store, which is emptied once sent.
    const bus = await connectBus({ servers: testNatsUrl(), prefix: stack.prefix, name: 'e2e-delivery-check' });
    try {
      const stream = `OBJ_${bus.names.bodyBucket}`;
      const info = await bus.jsm.streams.info(stream);
      // The 5 MB body went in as chunks (nats.js object store: 128 KiB each), not one message.
      expect(info.state.last_seq).toBeGreaterThanOrEqual(Math.floor((5 * 1024 * 1024) / (128 * 1024)));
      const deadline = Date.now() + 10_000;
      let bytes = info.state.bytes;
      while (bytes >= 1024 * 1024 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        bytes = (await bus.jsm.streams.info(stream)).state.bytes;
      }
      expect(bytes).toBeLessThan(1024 * 1024);
    } finally {
      await bus.close();
    }
  });

  it('delivers over implicit TLS', async () => {
    const res = await client.sendMail({ sender: 'tls-sender', to: ['dave@students.campus.example'], subject: 'Over implicit TLS', text: 'hello' });
    const mail = await waitForMail(implicitTls, res.messageId);
    expect(mail.secure).toBe(true);
    expect(mail.user).toBe(SMTP_USER);
    expect(mail.parsed.subject).toBe('Over implicit TLS');
    expect(mail.parsed.from?.value[0]?.address).toBe('tls-sender@campus.example');
    // No default reply_to on this sender, so none is invented.
    expect(mail.parsed.replyTo).toBeUndefined();
    const status = await waitForState(client, res.messageId, [MessageState.SENT]);
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'SENT']);
  });
});
