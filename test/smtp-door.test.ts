import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { busNames } from '@relay/bus';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { create } from '@bufbuild/protobuf';
import {
  CreateSmtpPasswordRequestSchema,
  ListClientsRequestSchema,
  MessageState,
  PutClientRequestSchema,
  type CreateSmtpPasswordResponse,
  type ListClientsResponse,
} from '@relay/proto';
import {
  clientEntry,
  codeOf,
  dropBus,
  FAST_DELIVERY,
  freePort,
  hasNatsServer,
  NATS_SERVER_BIN,
  newClient,
  type PrivateNats,
  queuedId,
  type ReceivedMail,
  requireBinary,
  runsWith,
  type ServiceProcess,
  sleep,
  smtpSender,
  spawnService,
  type Stack,
  startPrivateNats,
  startSmtpServer,
  startStack,
  submit,
  type SubmitOptions,
  testCa,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  uniquePrefix,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const RECEIVER = { user: 'relay@campus.example', password: 'receiver-secret' };
/** J1 / Campus Cafe style: AUTH over STARTTLS or implicit TLS. */
const J1 = { user: 'j1@campus.example', pass: 'j1 app password' };
/** The printer's address; outsiders connect from another loopback address. */
const PRINTER_IP = '127.0.0.2';
const OUTSIDER_IP = '127.0.0.3';

const j1 = newClient('j1', ['registrar']);
const ops = newClient('ops', [], true);
const printer = newClient('scanner-3rd-floor', ['scans']);

let receiver: TestSmtpServer;
let stack: Stack;
let grpc: TestClient;
let ports: { smtp: number; smtps: number };

/** A message from the printer's allowed address, as the scanner sender, without AUTH or TLS. */
const submitAsPrinter = (raw: Buffer) =>
  submit({
    port: ports.smtp,
    security: 'none',
    localAddress: PRINTER_IP,
    envelope: { from: 'scans@campus.example', to: ['ada@students.campus.example'] },
    raw,
  });

const SMTP_DOOR_ENV = (): Record<string, string> => ({
  RELAY_SMTP_PORT: '0',
  RELAY_SMTPS_PORT: '0',
  RELAY_TLS_CERT: testCa().certFile,
  RELAY_TLS_KEY: testCa().keyFile,
});

beforeAll(async () => {
  receiver = await startSmtpServer({ security: 'starttls', users: { [RECEIVER.user]: RECEIVER.password } });
  stack = await startStack({
    label: 'smtp-door',
    config: {
      clients: [
        { ...clientEntry(j1), smtp: { username: J1.user, password: 'env:J1_SMTP_PASSWORD' } },
        { ...clientEntry(printer), smtp: { allow_ips: [`${PRINTER_IP}/32`, '127.0.0.1'] } },
        clientEntry(ops),
      ],
      senders: [
        {
          ...smtpSender({ id: 'registrar', from: 'Registrar <registrar@campus.example>', server: receiver, auth: RECEIVER }),
          smtp_aliases: ['bounces@campus.example'],
          rate: { max_recipients_per_message: 3 },
        },
        { ...smtpSender({ id: 'scans', from: 'scans@campus.example', server: receiver, auth: RECEIVER }), rate: { max_message_bytes: 64 * 1024 } },
      ],
      delivery: FAST_DELIVERY,
    },
    env: { ...SMTP_DOOR_ENV(), J1_SMTP_PASSWORD: J1.pass },
  });
  ports = { smtp: stack.ingest.ports.smtp!, smtps: stack.ingest.ports.smtps! };
  grpc = stack.client(j1.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await receiver?.close();
  expect(uncleanExits(results ?? [])).toEqual([]);
});

/** A message as a mail client composes it: multipart, with a binary and a text attachment. */
async function composed(from: string, to: string[], subject: string, extra: { bcc?: string[] } = {}): Promise<Buffer> {
  return new MailComposer({
    from,
    to,
    ...(extra.bcc ? { bcc: extra.bcc } : {}),
    subject,
    messageId: `<${randomBytes(8).toString('hex')}@j1.campus.example>`,
    // CRLF: SMTP has no bare line feeds, a client turns them into CRLF on the wire.
    text: 'Transcript attached.\r\nGrüße aus dem Registrar.',
    html: '<p>Transcript <b>attached</b>.</p>',
    attachments: [
      { filename: 'transcript.pdf', contentType: 'application/pdf', content: randomBytes(150_000) },
      { filename: 'notes.csv', contentType: 'text/csv', content: 'course,grade\nMATH101,A\n' },
    ],
  })
    .compile()
    .build();
}

/** The received message is the submitted one with trace header lines put in front, nothing else changed. */
function expectRelayedAsWritten(mail: ReceivedMail, written: Buffer, messageId: string) {
  // SMTP ends the DATA with a line break; a message not ending in one gets it from the client.
  const original = written.subarray(-2).toString() === '\r\n' ? written : Buffer.concat([written, Buffer.from('\r\n')]);
  const tail = mail.raw.subarray(mail.raw.length - original.length);
  expect(tail.equals(original)).toBe(true);
  const prefix = mail.raw.subarray(0, mail.raw.length - original.length).toString('latin1');
  const fields = prefix
    .split(/\r\n(?![ \t])/)
    .filter(Boolean)
    .map((f) => f.slice(0, f.indexOf(':')).toLowerCase());
  expect(new Set(fields)).toEqual(new Set(['traceparent', 'x-relay-message-id', 'received'].filter((f) => fields.includes(f))));
  expect(fields).toContain('received');
  expect(prefix).toContain(`X-Relay-Message-ID: ${messageId}\r\n`);
}

const registrarMail = (over: Partial<SubmitOptions> = {}): Promise<SubmitOptions> =>
  composed('Registrar <registrar@campus.example>', ['ada@students.campus.example'], 'door test').then((raw) => ({
    port: ports.smtp,
    security: 'starttls',
    auth: J1,
    envelope: { from: 'registrar@campus.example', to: ['ada@students.campus.example'] },
    raw,
    ...over,
  }));

describe('SMTP door: submission with real clients', () => {
  it('nodemailer over STARTTLS with AUTH: 250 after storing, relayed byte for byte to the envelope recipients, GetMessage works', async () => {
    const to = ['ada@students.campus.example', 'Bob <bob@students.campus.example>'];
    const raw = await composed('Registrar <registrar@campus.example>', to, 'Your transcript', { bcc: ['archive@campus.example'] });
    const envelope = { from: 'bounces@campus.example', to: ['ada@students.campus.example', 'bob@students.campus.example', 'archive@campus.example'] };
    const res = await submit({ port: ports.smtp, security: 'starttls', auth: J1, envelope, raw });
    if (!res.ok) throw new Error(res.response);
    const id = queuedId(res.response);

    const mail = await waitForMail(receiver, id);
    expect(mail.envelope).toEqual(envelope);
    expectRelayedAsWritten(mail, raw, id);
    expect(mail.parsed.attachments.map((a) => a.filename)).toEqual(['transcript.pdf', 'notes.csv']);

    const status = await waitForState(grpc, id, [MessageState.SENT]);
    expect(status.sender).toBe('registrar');
  });

  it('nodemailer over implicit TLS (465)', async () => {
    const res = await submit(await registrarMail({ port: ports.smtps, security: 'tls' }));
    if (!res.ok) throw new Error(res.response);
    const id = queuedId(res.response);
    const mail = await waitForMail(receiver, id);
    expect(mail.parsed.subject).toBe('door test');
    expect(mail.parsed.attachments.map((a) => a.filename)).toEqual(['transcript.pdf', 'notes.csv']);
  });

  it('a printer from an allowed address sends without AUTH or TLS', async () => {
    const raw = Buffer.from(
      'From: scans@campus.example\r\nTo: ada@students.campus.example\r\nSubject: Scan from MFP-3\r\nMessage-ID: <scan-1@mfp3>\r\n' +
        'MIME-Version: 1.0\r\nContent-Type: application/pdf; name="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
        `${randomBytes(3000).toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`,
      'latin1',
    );
    const res = await submitAsPrinter(raw);
    if (!res.ok) throw new Error(res.response);
    const id = queuedId(res.response);
    expectRelayedAsWritten(await waitForMail(receiver, id), raw, id);
  });

  it('8-bit and UTF-8 content travels unchanged (8BITMIME, SMTPUTF8)', async () => {
    const raw = Buffer.from(
      'From: Registrar <registrar@campus.example>\r\nTo: Zoë <zoe@students.campus.example>\r\nSubject: Grüße, Zoë ✉\r\n' +
        'Message-ID: <utf8-1@j1.campus.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n' +
        'Grüße aus dem Registrar – 成績証明書\r\n',
      'utf8',
    );
    const res = await submit({
      port: ports.smtp,
      security: 'starttls',
      auth: J1,
      envelope: { from: 'registrar@campus.example', to: ['zoe@students.campus.example'] },
      raw,
    });
    if (!res.ok) throw new Error(res.response);
    const id = queuedId(res.response);
    const mail = await waitForMail(receiver, id);
    expectRelayedAsWritten(mail, raw, id);
    expect(mail.parsed.subject).toBe('Grüße, Zoë ✉');
  });

  it('counts SMTP sessions and messages accepted by door', async () => {
    const viaGrpc = await grpc.sendMail({ sender: 'registrar', to: ['ada@students.campus.example'], subject: 'via gRPC', text: 'hi' });
    await waitForMail(receiver, viaGrpc.messageId);
    const viaSmtp = await submit(await registrarMail());
    if (!viaSmtp.ok) throw new Error(viaSmtp.response);
    const text = await (await fetch(`http://127.0.0.1:${stack.ingest.ports.metrics}/metrics`)).text();
    expect(text).toMatch(/^relay_messages_accepted_total\{[^}]*door="grpc"[^}]*\} [1-9]/m);
    expect(text).toMatch(/^relay_smtp_sessions_total\{[^}]*\} [1-9]/m);
    expect(text).toMatch(/^relay_messages_accepted_total\{[^}]*door="smtp"[^}]*\} [1-9]/m);
  });
});

/** A raw SMTP client: writes bytes, collects reply lines, upgrades to TLS on request. */
async function rawClient(port: number, localAddress = '127.0.0.1') {
  let socket: Socket = tcpConnect({ host: '127.0.0.1', port, localAddress });
  const lines: string[] = [];
  let partial = '';
  let waiter: (() => void) | undefined;
  const listen = (s: Socket) =>
    s.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString('latin1')).split('\r\n');
      partial = parts.pop()!;
      lines.push(...parts);
      waiter?.();
    });
  listen(socket);
  const finals = () => lines.filter((l) => /^\d{3} /.test(l)).length;
  /** Resolves once `n` more final reply lines than `seen` came. */
  const until = async (count: number) => {
    const timeout = Date.now() + 10_000;
    while (finals() < count) {
      if (socket.destroyed || Date.now() > timeout) throw new Error(`no reply; got ${JSON.stringify(lines)}`);
      await new Promise<void>((r) => {
        waiter = r;
        setTimeout(r, 100);
      });
    }
  };
  await until(1);
  return {
    lines,
    /** Writes `data` and waits for `replies` final replies to it; returns the lines they took. */
    async send(data: string | Buffer, replies = 1): Promise<string[]> {
      const before = lines.length;
      const target = finals() + replies;
      socket.write(data);
      await until(target);
      return lines.slice(before);
    },
    async starttls() {
      socket.removeAllListeners('data');
      const secure = tlsConnect({ socket, ca: testCa().caPem, servername: 'localhost' });
      await new Promise<void>((r) => secure.once('secureConnect', () => r()));
      socket = secure;
      listen(socket);
    },
    end: () => socket.end(),
  };
}

describe('SMTP door: CHUNKING and enhanced status codes', () => {
  it('a message sent with BDAT in several chunks after STARTTLS and AUTH is relayed byte for byte', async () => {
    // A line that is only a dot ends DATA; in a BDAT chunk it is just message text.
    const raw = Buffer.concat([
      Buffer.from(
        'From: Registrar <registrar@campus.example>\r\nTo: ada@students.campus.example\r\nSubject: sent with BDAT\r\nMIME-Version: 1.0\r\n' +
          'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nA line.\r\n.\r\n..two dots\r\nGrüße\r\n',
      ),
      Buffer.from(`${randomBytes(60_000).toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`),
    ]);
    const c = await rawClient(ports.smtp);
    expect(await c.send('EHLO exchange.test\r\n')).toEqual(expect.arrayContaining(['250-CHUNKING', '250-ENHANCEDSTATUSCODES']));
    expect(await c.send('STARTTLS\r\n')).toEqual(['220 2.0.0 Ready to start TLS']);
    await c.starttls();
    await c.send('EHLO exchange.test\r\n');
    expect(await c.send(`AUTH PLAIN ${Buffer.from(`\0${J1.user}\0${J1.pass}`).toString('base64')}\r\n`)).toEqual(['235 2.7.0 Authentication successful']);
    expect(await c.send('MAIL FROM:<registrar@campus.example> BODY=8BITMIME\r\nRCPT TO:<ada@students.campus.example>\r\n', 2)).toEqual([
      '250 2.1.0 Sender OK',
      '250 2.1.5 Recipient OK',
    ]);
    // Chunk boundaries inside CRLFs, at a dot starting a line, at odd sizes.
    const cuts = [raw.indexOf('\r\n') + 1, raw.indexOf('\r\n.\r\n') + 3, 50_001, raw.length];
    let from = 0;
    const replies: string[] = [];
    for (const [i, cut] of cuts.entries()) {
      const last = i === cuts.length - 1;
      replies.push(...(await c.send(Buffer.concat([Buffer.from(`BDAT ${cut - from}${last ? ' LAST' : ''}\r\n`), raw.subarray(from, cut)]))));
      from = cut;
    }
    expect(replies.slice(0, -1)).toEqual(cuts.slice(0, -1).map((cut, i) => `250 2.0.0 ${cut - (cuts[i - 1] ?? 0)} octets received`));
    expect(replies.at(-1)).toMatch(/^250 2\.0\.0 OK \S+ queued$/);
    const id = queuedId(replies.at(-1)!);
    expect(await c.send('QUIT\r\n')).toEqual(['221 2.0.0 Bye']);
    const mail = await waitForMail(receiver, id);
    expect(mail.envelope).toEqual({ from: 'registrar@campus.example', to: ['ada@students.campus.example'] });
    expectRelayedAsWritten(mail, raw, id);
    expect(mail.raw.toString('latin1')).toMatch(/^Received: from exchange\.test \(\[127\.0\.0\.1\]\)\r\n\tby .* with ESMTPSA;/m);
  });

  it('refusals carry exactly one enhanced status code, the one the door means', async () => {
    const c = await rawClient(ports.smtp, PRINTER_IP);
    await c.send('EHLO printer.test\r\n');
    const got = await c.send(
      'MAIL FROM:<registrar@campus.example>\r\nRCPT TO:<ada@students.campus.example>\r\nMAIL FROM:<scans@campus.example> SIZE=70000\r\nBDAT 5 LAST\r\nhello',
      4,
    );
    expect(got).toEqual([
      `550 5.7.1 Sender address <registrar@campus.example> is not one of client "scanner-3rd-floor"'s senders (a sender's from or smtp_aliases)`,
      '503 5.5.1 MAIL FROM first',
      `552 5.3.4 Message size 70000 exceeds the limit of sender "scans" (${64 * 1024} bytes)`,
      '503 5.5.1 No transaction in progress (MAIL FROM first)',
    ]);
    c.end();
  });
});

describe('SMTP door: a client managed through the API', () => {
  it('logs in with the password the relay made, and with no other; a new username needs a new password', async () => {
    const admin = stack.client(ops.apiKey);
    const cafe = { user: 'cafe-staff@campus.example', pass: '' };
    await admin.admin(
      'putClient',
      create(PutClientRequestSchema, { client: { name: 'cafe', spec: { senders: ['registrar'], smtp: { username: cafe.user } } } }),
    );
    const made = await admin.admin<CreateSmtpPasswordResponse>('createSmtpPassword', create(CreateSmtpPasswordRequestSchema, { client: 'cafe' }));
    expect(made.username).toBe(cafe.user);
    const ok = await submit(await registrarMail({ auth: { user: cafe.user, pass: made.password }, localAddress: OUTSIDER_IP }));
    if (!ok.ok) throw new Error(ok.response);
    expect(ok.response).toMatch(/^250 2\.0\.0 OK \S+ queued/);
    const wrong = await submit(await registrarMail({ auth: { user: cafe.user, pass: `${made.password}x` }, localAddress: OUTSIDER_IP }));
    expect(wrong.ok).toBe(false);
    expect(wrong.response).toMatch(/^535 5\.7\.8/);
    // Another client's username is refused; a changed username drops the password.
    const taken = await codeOf(
      admin.admin('putClient', create(PutClientRequestSchema, { client: { name: 'copycat', spec: { senders: [], smtp: { username: J1.user } } } })),
    );
    expect(taken.details).toBe(`smtp.username: "${J1.user}" is already client "j1"'s username`);
    const listed = await admin.admin<ListClientsResponse>('listClients', create(ListClientsRequestSchema, {}));
    const etag = listed.clients.find((c) => c.name === 'cafe')!.etag;
    await admin.admin(
      'putClient',
      create(PutClientRequestSchema, { client: { name: 'cafe', etag, spec: { senders: ['registrar'], smtp: { username: 'other@campus.example' } } } }),
    );
    const moved = await submit(await registrarMail({ auth: { user: 'other@campus.example', pass: made.password }, localAddress: OUTSIDER_IP }));
    expect(moved.ok).toBe(false);
    expect(moved.response).toMatch(/^535 5\.7\.8/);
  });
});

describe('SMTP door: never an open relay', () => {
  it('no AUTH from an address that is not allowed: 530 5.7.0', async () => {
    const res = await submit(await registrarMail({ auth: undefined, localAddress: OUTSIDER_IP }));
    expect(res.ok).toBe(false);
    expect(res.response).toMatch(/^530 5\.7\.0 Authentication required/);
  });

  it('a wrong password: 535 5.7.8', async () => {
    const res = await submit(await registrarMail({ auth: { user: J1.user, pass: 'guess' }, localAddress: OUTSIDER_IP }));
    expect(res.ok).toBe(false);
    expect(res.response).toMatch(/^535 5\.7\.8/);
  });

  it('no AUTH over plain text before STARTTLS: a client with a password but no TLS does not log in', async () => {
    // Not offered AUTH, nodemailer keeps the password to itself and goes on unauthenticated.
    const res = await submit(await registrarMail({ security: 'none', localAddress: OUTSIDER_IP }));
    expect(res.ok).toBe(false);
    expect(res.response).toMatch(/^530 5\.7\.0 Authentication required/);
  });

  it('an allowed address sending as someone else: 550 5.7.1 for MAIL FROM and for the From header', async () => {
    const foreign = await submit(await registrarMail({ security: 'none', auth: undefined, localAddress: PRINTER_IP }));
    expect(foreign.ok).toBe(false);
    expect(foreign.response).toMatch(/^550 5\.7\.1 Sender address <registrar@campus\.example> is not one of client "scanner-3rd-floor"'s senders/);

    const spoofed = Buffer.from('From: president@campus.example\r\nTo: ada@students.campus.example\r\nSubject: hi\r\n\r\nhello\r\n');
    const header = await submitAsPrinter(spoofed);
    expect(header.ok).toBe(false);
    expect(header.response).toMatch(/^550 5\.7\.1 From header address <president@campus\.example> is not an address of sender "scans"/);
    const onBehalf = Buffer.from(
      'From: scans@campus.example\r\nSender: president@campus.example\r\nTo: ada@students.campus.example\r\nSubject: hi\r\n\r\nhello\r\n',
    );
    const sender = await submitAsPrinter(onBehalf);
    expect(sender.ok).toBe(false);
    expect(sender.response).toMatch(/^550 5\.7\.1 Sender or Resent-\* header address <president@campus\.example> is not an address of sender "scans"/);
  });

  it("an authenticated client cannot use another client's sender", async () => {
    const raw = Buffer.from('From: scans@campus.example\r\nTo: ada@students.campus.example\r\nSubject: hi\r\n\r\nhello\r\n');
    const res = await submit({
      port: ports.smtp,
      security: 'starttls',
      auth: J1,
      envelope: { from: 'scans@campus.example', to: ['ada@students.campus.example'] },
      raw,
    });
    expect(res.ok).toBe(false);
    expect(res.response).toMatch(/^550 5\.7\.1 /);
  });
});

describe('SMTP door: limits', () => {
  it("refuses recipients over the sender's max_recipients_per_message with 452 4.5.3", async () => {
    const to = ['a@students.campus.example', 'b@students.campus.example', 'c@students.campus.example', 'd@students.campus.example'];
    const res = await submit(await registrarMail({ envelope: { from: 'registrar@campus.example', to } }));
    if (!res.ok) throw new Error(res.response);
    expect(res.rejected).toEqual(['d@students.campus.example']);
    expect(res.rejectedResponses[0]).toMatch(/^452 4\.5\.3 Too many recipients/);
    const mail = await waitForMail(receiver, queuedId(res.response));
    expect(mail.envelope.to).toEqual(to.slice(0, 3));
  });

  it("refuses a message over the sender's size limit with 552 5.3.4", async () => {
    const raw = Buffer.from(`From: scans@campus.example\r\nTo: ada@students.campus.example\r\nSubject: big scan\r\n\r\n${'x'.repeat(998)}\r\n`.repeat(80));
    const res = await submitAsPrinter(raw);
    expect(res.ok).toBe(false);
    expect(res.response).toMatch(/^552 5\.3\.4 /);
  });
});

const run = promisify(execFile);
const SWAKS = '/usr/bin/swaks';
const SMTP_SOURCE = '/usr/sbin/smtp-source';
const installed = (bin: string) => requireBinary(bin, 'apt-get install swaks postfix');

async function received(rcpt: string, n: number, timeoutMs = 20_000): Promise<ReceivedMail[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const got = receiver.messages.filter((m) => m.envelope.to.includes(rcpt));
    if (got.length >= n) return got;
    if (Date.now() > until) throw new Error(`timed out: ${got.length}/${n} messages for ${rcpt} at the receiving server`);
    await sleep(50);
  }
}

describe.runIf(runsWith(SWAKS))('SMTP door: swaks', () => {
  it('STARTTLS + AUTH PLAIN with an attachment; EHLO advertises the extensions', async () => {
    installed(SWAKS);
    const dir = mkdtempSync(join(tmpdir(), 'relay-swaks-'));
    const file = join(dir, 'report.bin');
    const content = randomBytes(20_000);
    writeFileSync(file, content);
    const rcpt = `swaks-${randomBytes(4).toString('hex')}@students.campus.example`;
    const { stdout } = await run(SWAKS, [
      '--server',
      '127.0.0.1',
      '--port',
      String(ports.smtp),
      '--tls',
      '--auth',
      'PLAIN',
      '--auth-user',
      J1.user,
      '--auth-password',
      J1.pass,
      '--from',
      'registrar@campus.example',
      '--to',
      rcpt,
      '--header',
      'Subject: swaks door test',
      '--attach-type',
      'application/octet-stream',
      '--attach',
      `@${file}`,
    ]);
    for (const ext of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'STARTTLS', 'SIZE \\d+']) {
      expect(stdout).toMatch(new RegExp(`250[- ]${ext}\\r?\\n`));
    }
    expect(stdout).toMatch(/AUTH PLAIN LOGIN/);
    const id = queuedId(/250 2\.0\.0 OK \S+ queued/.exec(stdout)![0]);
    const [mail] = await received(rcpt, 1);
    expect(mail!.raw.toString('latin1')).toContain(`X-Relay-Message-ID: ${id}`);
    expect(mail!.parsed.subject).toBe('swaks door test');
    expect(mail!.parsed.attachments[0]!.content.equals(content)).toBe(true);
  });

  it('AUTH without TLS is refused; MAIL without AUTH from an outside address gets 530', async () => {
    installed(SWAKS);
    const common = [
      '--server',
      '127.0.0.1',
      '--port',
      String(ports.smtp),
      '--local-interface',
      OUTSIDER_IP,
      '--from',
      'registrar@campus.example',
      '--to',
      'ada@students.campus.example',
    ];
    const noTls = await run(SWAKS, [...common, '--auth', 'PLAIN', '--auth-user', J1.user, '--auth-password', J1.pass]).catch((e: { stdout: string }) => e);
    expect(noTls.stdout).not.toMatch(/250 2\.0\.0 OK/);
    // The password never goes out in clear text: swaks finds no AUTH offered and stops.
    expect(noTls.stdout).not.toMatch(/ -> AUTH/);
    const noAuth = await run(SWAKS, common).catch((e: { stdout: string }) => e);
    expect(noAuth.stdout).toMatch(/530 5\.7\.0 Authentication required/);
  });
});

describe.runIf(runsWith(SMTP_SOURCE))("SMTP door: Postfix's smtp-source", () => {
  it('many messages over parallel sessions from an allowed address, all relayed', async () => {
    installed(SMTP_SOURCE);
    const rcpt = `load-${randomBytes(4).toString('hex')}@example.test`;
    await run(SMTP_SOURCE, ['-d', '-s', '4', '-m', '40', '-l', '2048', '-f', 'scans@campus.example', '-t', rcpt, `127.0.0.1:${ports.smtp}`]);
    const mails = await received(rcpt, 40);
    expect(mails).toHaveLength(40);
    expect(mails.every((m) => m.envelope.from === 'scans@campus.example')).toBe(true);
  });
});

const POSTFIX = '/usr/sbin/postfix';

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(true)).once('error', () => resolve(false));
    s.once('connect', () => s.destroy());
  });
const postfix = (args: string[]) => run(POSTFIX, args);

/**
 * A private Postfix (its own configuration and queue in a temporary directory, loopback only)
 * that takes mail on `port` and relays each domain in `routes` to the loopback port given.
 */
async function startPostfix(port: number, routes: Record<string, number>): Promise<{ maillog(): string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join('/var/tmp', 'relay-postfix-'));
  // Postfix's daemons run as the postfix user and must get through to their directories.
  chmodSync(dir, 0o755);
  const etc = join(dir, 'etc');
  for (const d of [etc, join(dir, 'spool'), join(dir, 'data')]) mkdirSync(d);
  await run('chown', ['postfix', join(dir, 'data')]);
  const transport = Object.entries(routes)
    .map(([domain, p]) => `${domain}=smtp:[127.0.0.1]:${p}`)
    .join(', ');
  writeFileSync(
    join(etc, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${dir}/spool`,
      `data_directory = ${dir}/data`,
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'myhostname = postfix.test',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      'mydestination =',
      'local_recipient_maps =',
      'alias_maps =',
      'alias_database =',
      `transport_maps = inline:{ ${transport} }`,
      'default_transport = error:not routed in this test',
      'smtpd_tls_security_level = none',
      'smtp_tls_security_level = none',
      `maillog_file = ${dir}/maillog`,
      `maillog_file_prefixes = ${dir}`,
      '',
    ].join('\n'),
  );
  const services = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'smtp unix - - n - - smtp',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  writeFileSync(join(etc, 'master.cf'), `${services.join('\n')}\n`);
  const maillog = () => (existsSync(join(dir, 'maillog')) ? readFileSync(join(dir, 'maillog'), 'utf8') : '');
  const stop = async () => {
    const pidFile = join(dir, 'spool', 'pid', 'master.pid');
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
    await postfix(['-c', etc, 'stop']).catch(() => {});
    // postfix stop returns once the master was told; wait for it to have gone.
    for (let i = 0; pid && i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await sleep(100);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await postfix(['-c', etc, 'set-permissions', 'create-missing']);
    await postfix(['-c', etc, 'start']);
    const until = Date.now() + 10_000;
    while (!(await accepts(port))) {
      if (Date.now() > until) throw new Error(`postfix is not listening on 127.0.0.1:${port}\n${maillog()}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { maillog, stop };
}

const runnableAsRoot = (existsSync(POSTFIX) && process.getuid?.() === 0) || process.env.CI === 'true';

// A campus mail server in front of the relay: Postfix's smtp client (which sends with DATA, not
// BDAT, even where CHUNKING is offered) relays a message through the door from an allowed address.
describe.runIf(runnableAsRoot)("SMTP door: an MTA relaying into it (Postfix's smtp client)", () => {
  it("delivers, and Postfix records the door's 250 with the message id", async () => {
    installed(POSTFIX);
    const port = await freePort();
    const mta = await startPostfix(port, { 'students.campus.example': ports.smtp });
    try {
      const tag = randomBytes(4).toString('hex');
      const to = `pf-${tag}@students.campus.example`;
      const raw = Buffer.from(`From: scans@campus.example\r\nTo: ${to}\r\nSubject: via postfix ${tag}\r\nMessage-ID: <${tag}@mfp3>\r\n\r\nScan attached.\r\n`);
      const res = await submit({ port, security: 'none', envelope: { from: 'scans@campus.example', to: [to] }, raw });
      if (!res.ok) throw new Error(`postfix refused the message: ${res.response}`);
      const [mail] = await received(to, 1).catch((err: Error) => {
        throw new Error(`${err.message}\n${mta.maillog()}`);
      });
      expect(mail!.parsed.subject).toBe(`via postfix ${tag}`);
      expect(mail!.raw.toString('latin1')).toContain(`Message-ID: <${tag}@mfp3>`);
      // Postfix logs through its own log daemon: the line may come a moment after the mail.
      const logged = /status=sent \(250 2\.0\.0 OK (\S+) queued\)/;
      for (let i = 0; i < 50 && !logged.test(mta.maillog()); i++) await sleep(100);
      const sent = logged.exec(mta.maillog());
      expect(sent, mta.maillog()).not.toBeNull();
      expect(mail!.raw.toString('latin1')).toContain(`X-Relay-Message-ID: ${sent![1]}`);
    } finally {
      await mta.stop();
    }
  });
});

// The broker goes away under a running ingest: a NATS server of this test's own, killed and restarted.
describe.skipIf(!hasNatsServer)(`SMTP door: broker down (needs ${NATS_SERVER_BIN})`, () => {
  let nats: PrivateNats;
  let ingest: ServiceProcess;
  const prefix = uniquePrefix('smtp-down');

  beforeAll(async () => {
    nats = await startPrivateNats();
    ingest = await spawnService('ingest', { env: { ...stack.env, NATS_URL: nats.url, RELAY_BUS_PREFIX: prefix, RELAY_GRPC_PORT: '0', RELAY_HTTP_PORT: '0' } });
  });

  afterAll(async () => {
    await ingest?.kill();
    if (nats) {
      await dropBus(prefix, nats.url).catch(() => {});
      await nats.close();
    }
  });

  it('451 4.3.0 while the broker is down, and nothing of that message is stored', async () => {
    const port = ingest.ports.smtp!;
    const up = await submit(await registrarMail({ port }));
    if (!up.ok) throw new Error(up.response);
    await nats.kill();
    const down = await submit(await registrarMail({ port }));
    expect(down.ok).toBe(false);
    expect(down.response).toMatch(/^451 4\.3\.0 The message was not stored/);

    await nats.restart();
    const nc = await connect({ servers: nats.url });
    try {
      const info = await (await jetstreamManager(nc)).streams.info(busNames(prefix).submittedStream);
      expect(info.state.messages).toBe(1);
    } finally {
      await nc.close();
    }
  });
});
