import { DeliveryOutcome, MessageState } from '@relay/proto';
import {
  clientEntry,
  eventually,
  FAST_DELIVERY,
  DOVECOT_BIN,
  runsWith,
  testCa,
  newClient,
  type TestDovecot,
  smtpSender,
  type Stack,
  startDovecot,
  startSmtpServer,
  startStack,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A message the relay sent bounces: the provider's report lands in the sender's mailbox (a real
// dovecot), smtp-sender reads it over IMAP with the sender's SMTP password, and GetMessage and
// ListMessages show the outcome.

const USER = 'registrar@campus.example';
const PASSWORD = 'registrar mailbox password';
const app = newClient('student-system', ['registrar']);
const ops = newClient('ops', [], true);

let imap: TestDovecot;
let smtp: TestSmtpServer;
let stack: Stack;
let client: TestClient;
let admin: TestClient;

/** Postfix's bounce for `recipients` of a message, returning its headers (as Postfix does). */
function bounce(original: Buffer, recipients: string[], n: number): string {
  const text = original.toString('latin1');
  const headers = text.slice(0, text.search(/\r?\n\r?\n/));
  const perRecipient = recipients.map((r) =>
    [
      `Final-Recipient: rfc822; ${r}`,
      'Action: failed',
      'Status: 5.1.1',
      `Diagnostic-Code: smtp; 550 5.1.1 <${r}>: Recipient address rejected: User unknown`,
    ].join('\r\n'),
  );
  return [
    'From: MAILER-DAEMON@mx.students.campus.example (Mail Delivery System)',
    `To: ${USER}`,
    'Subject: Undelivered Mail Returned to Sender',
    `Message-Id: <bounce-${n}@mx.students.campus.example>`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"',
    '',
    '--B',
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered to one or more recipients.',
    '--B',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.students.campus.example',
    '',
    perRecipient.join('\r\n\r\n'),
    '',
    '--B',
    'Content-Type: text/rfc822-headers',
    '',
    headers,
    '--B--',
    '',
  ].join('\r\n');
}

describe.runIf(runsWith(DOVECOT_BIN))('bounces read back from the sending mailbox', () => {
  beforeAll(async () => {
    imap = await startDovecot({ users: { [USER]: PASSWORD } });
    smtp = await startSmtpServer({ security: 'starttls', users: { [USER]: PASSWORD } });
    stack = await startStack({
      label: 'bounces',
      config: {
        clients: [clientEntry(app), clientEntry(ops)],
        senders: [
          {
            ...smtpSender({ id: 'registrar', from: USER, server: smtp, auth: { user: USER, password: PASSWORD } }),
            feedback: { imap: { host: imap.host, port: imap.port, security: 'tls', servername: 'localhost', ca_file: testCa().caFile }, interval: '1s' },
          },
        ],
        delivery: FAST_DELIVERY,
      },
    });
    client = stack.client(app.apiKey);
    admin = stack.client(ops.apiKey);
  });

  afterAll(async () => {
    const results = await stack?.stop();
    await Promise.all([smtp?.close(), imap?.close()]);
    expect(uncleanExits(results ?? [])).toEqual([]);
  });

  it('makes a message BOUNCED when every recipient bounced, and lists a partial bounce on a SENT message', async () => {
    const all = await client.sendMail({ sender: 'registrar', to: ['gone@students.campus.example'], subject: 'Your transcript', text: 'Attached.' });
    const some = await client.sendMail({
      sender: 'registrar',
      to: ['gone2@students.campus.example', 'here@students.campus.example'],
      subject: 'Enrollment',
      text: 'Confirmed.',
    });
    await waitForState(client, all.messageId, [MessageState.SENT]);
    await waitForState(client, some.messageId, [MessageState.SENT]);
    const sentAll = await waitForMail(smtp, all.messageId);
    const sentSome = await waitForMail(smtp, some.messageId);

    const mailbox = new ImapFlow({
      host: imap.host,
      port: imap.port,
      secure: true,
      tls: { ca: testCa().caPem, servername: 'localhost' },
      auth: { user: USER, pass: PASSWORD },
      logger: false,
    });
    await mailbox.connect();
    await mailbox.append('INBOX', bounce(sentAll.raw, ['gone@students.campus.example'], 1));
    await mailbox.append('INBOX', bounce(sentSome.raw, ['gone2@students.campus.example'], 2));

    const bounced = await eventually(async () => {
      const m = await client.getMessage(all.messageId);
      return m.state === MessageState.BOUNCED ? m : undefined;
    }, 30_000);
    expect(bounced.recipientOutcomes.map((o) => [o.recipient, o.outcome, o.status])).toEqual([
      ['gone@students.campus.example', DeliveryOutcome.BOUNCED, '5.1.1'],
    ]);
    expect(bounced.lastError).toContain('bounced: gone@students.campus.example (550 5.1.1');

    const partial = await eventually(async () => {
      const m = await client.getMessage(some.messageId);
      return m.recipientOutcomes.length > 0 ? m : undefined;
    }, 30_000);
    expect(partial.state).toBe(MessageState.SENT);
    expect(partial.recipientOutcomes.map((o) => [o.recipient, o.outcome])).toEqual([['gone2@students.campus.example', DeliveryOutcome.BOUNCED]]);

    const listed = await eventually(async () => {
      const r = await admin.listMessages({ state: MessageState.BOUNCED });
      return r.messages.length > 0 ? r : undefined;
    });
    expect(listed.messages.map((m) => m.messageId)).toEqual([all.messageId]);

    // The reports were moved out of INBOX, not deleted.
    const processed = await eventually(async () => {
      const s = await mailbox.status('Delivery reports', { messages: true }).catch(() => undefined);
      return s && s.messages === 2 ? s : undefined;
    });
    expect(processed.messages).toBe(2);
    const inbox = await mailbox.status('INBOX', { messages: true });
    expect(inbox ? inbox.messages : undefined).toBe(0);
    await mailbox.logout();
  });
});
