import { randomBytes } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { MessageState } from '@relay/proto';
import {
  clientEntry,
  FAST_DELIVERY,
  type GraphFake,
  type GraphSentMessage,
  type IdentityFake,
  newClient,
  queuedId,
  sleep,
  type Stack,
  startGraphFake,
  startIdentityFake,
  startStack,
  submit,
  testCa,
  type TestClient,
  uncleanExits,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLIENT_ID = 'graph-app';
const SECRET = 'graph-client-secret-8Q~value';
const MAILBOX = 'registrar@campus.example';
const J1 = { user: 'j1@campus.example', pass: 'j1 app password' };

let idp: IdentityFake;
let graph: GraphFake;
let stack: Stack;
let grpc: TestClient;
const j1 = newClient('j1', ['registrar']);

beforeAll(async () => {
  idp = await startIdentityFake({ clients: { [CLIENT_ID]: SECRET }, appRoles: { [CLIENT_ID]: ['Mail.Send', 'Mail.ReadWrite'] } });
  graph = await startGraphFake({ identity: idp, mailboxes: { [MAILBOX]: {} } });
  stack = await startStack({
    label: 'smtp-graph',
    env: {
      NODE_EXTRA_CA_CERTS: testCa().caFile,
      GRAPH_SECRET: SECRET,
      RELAY_SMTP_PORT: '0',
      RELAY_TLS_CERT: testCa().certFile,
      RELAY_TLS_KEY: testCa().keyFile,
    },
    config: {
      clients: [{ ...clientEntry(j1), smtp: { username: J1.user, password: J1.pass } }],
      senders: [
        {
          id: 'registrar',
          from: `Registrar <${MAILBOX}>`,
          transport: 'graph',
          graph: {
            tenant_id: 'tenant-registrar',
            client_id: CLIENT_ID,
            client_secret: 'env:GRAPH_SECRET',
            mailbox: MAILBOX,
            authority_url: idp.url,
            graph_url: graph.url,
          },
        },
      ],
      delivery: FAST_DELIVERY,
    },
  });
  grpc = stack.client(j1.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await graph?.close();
  await idp?.close();
  expect(uncleanExits(results ?? [])).toEqual([]);
});

async function sendOverSmtp(attachment: Buffer): Promise<{ id: string; raw: Buffer }> {
  const raw = await new MailComposer({
    from: `Registrar <${MAILBOX}>`,
    to: 'ada@students.campus.example',
    subject: `graph door ${attachment.length}`,
    messageId: `<${randomBytes(8).toString('hex')}@j1.campus.example>`,
    text: 'See attached.',
    attachments: [{ filename: 'scan.pdf', contentType: 'application/pdf', content: attachment }],
  })
    .compile()
    .build();
  const res = await submit({
    port: stack.ingest.ports.smtp!,
    security: 'starttls',
    auth: J1,
    envelope: { from: MAILBOX, to: ['ada@students.campus.example', 'hidden@campus.example'] },
    raw,
  });
  if (!res.ok) throw new Error(res.response);
  return { id: queuedId(res.response), raw };
}

async function sentWith(subject: string): Promise<GraphSentMessage> {
  const until = Date.now() + 20_000;
  for (;;) {
    const m = graph.sent.find((s) => s.message.subject === subject);
    if (m) return m;
    if (Date.now() > until) throw new Error(`Graph did not get "${subject}"`);
    await sleep(50);
  }
}

describe('SMTP door to Microsoft Graph', () => {
  it('under 4 MB: MIME sendMail with the message as written, envelope-only recipients as Bcc', async () => {
    const attachment = randomBytes(200_000);
    const { id, raw } = await sendOverSmtp(attachment);
    const sent = await sentWith(`graph door ${attachment.length}`);
    expect(sent.via).toBe('mime');
    const mime = sent.mime!;
    // SMTP ends DATA with a line break; the client adds one when the message does not end in one.
    const written = raw.subarray(-2).toString() === '\r\n' ? raw : Buffer.concat([raw, Buffer.from('\r\n')]);
    expect(mime.subarray(mime.length - written.length).equals(written)).toBe(true);
    const prefix = mime.subarray(0, mime.length - written.length).toString('latin1');
    expect(prefix).toMatch(/^X-Relay-Message-Id: \S+\r\n(x-traceparent: \S+\r\n)?Bcc: hidden@campus\.example\r\nReceived: from /);
    expect(mime.toString('latin1')).toContain(`X-Relay-Message-Id: ${id}\r\n`);
    expect(sent.message.bccRecipients!.map((r) => r.emailAddress.address)).toEqual(['hidden@campus.example']);
    expect(sent.attachments[0]!.size).toBe(attachment.length);
    await waitForState(grpc, id, [MessageState.SENT]);
  });

  it('refuses a header recipient the envelope does not name (Graph would mail it uncounted): 550 5.7.1', async () => {
    const raw = Buffer.from(`From: ${MAILBOX}\r\nTo: ada@students.campus.example, everyone@campus.example\r\nSubject: extra\r\n\r\nhello\r\n`);
    const res = await submit({
      port: stack.ingest.ports.smtp!,
      security: 'starttls',
      auth: J1,
      envelope: { from: MAILBOX, to: ['ada@students.campus.example'] },
      raw,
    });
    expect(res.ok).toBe(false);
    expect(res.response).toMatch(/^550 5\.7\.1 Header recipient <everyone@campus\.example> is not among the RCPT TO addresses/);
  });

  it('over 4 MB: parsed, sent as a draft with the attachment by upload session', async () => {
    const attachment = randomBytes(3_400_000);
    const { id } = await sendOverSmtp(attachment);
    const sent = await sentWith(`graph door ${attachment.length}`);
    expect(sent.via).toBe('draft');
    expect(sent.attachments.map((a) => ({ name: a.name, size: a.size, via: a.via }))).toEqual([
      { name: 'scan.pdf', size: attachment.length, via: 'upload-session' },
    ]);
    expect(sent.message.toRecipients!.map((r) => r.emailAddress.address)).toEqual(['ada@students.campus.example']);
    expect(sent.message.bccRecipients!.map((r) => r.emailAddress.address)).toEqual(['hidden@campus.example']);
    await waitForState(grpc, id, [MessageState.SENT]);
  });
});
