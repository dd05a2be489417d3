import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import { headers as natsHeaders } from '@nats-io/nats-core';
import { connectBus, type Bus } from '@relay/bus';
import { BeginConsentRequestSchema, type BeginConsentResponse, MessageState, SentCopyState } from '@relay/proto';
import {
  clientEntry,
  consumerSettled,
  DOVECOT_BIN,
  eventually,
  freePort,
  mailsWithId,
  newClient,
  queuedId,
  runsWith,
  requireBinary,
  smtpSender,
  type Stack,
  startDovecot,
  startIdentityFake,
  type IdentityFake,
  startSmtpServer,
  startStack,
  submit,
  type TestClient,
  testCa,
  type TestDovecot,
  testNatsUrl,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const PASSWORD = 'mailbox-password-1';
const COPY = 'copy@campus.example';
const LATE = 'late@campus.example';
/** A mailbox whose app signs in with app-only OAuth2 (client credentials) to SMTP and IMAP alike. */
const APP = 'app@campus.example';
const CLIENT_ID = 'sent-copy-app-id';
const CLIENT_SECRET = 'sent-copy-app-secret';
/** Mailboxes whose own sign-in (delegated, "Authenticate with MFA") the relay sends and copies with. */
const DELEGATED = 'delegated@campus.example';
const STALE = 'stale@campus.example';
const SMTP_SEND = 'https://outlook.office.com/SMTP.Send';
const IMAP_SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All';
let idp: IdentityFake;

let smtp: TestSmtpServer;
let dovecot: TestDovecot;
let latePort: number;
let lateDovecot: TestDovecot | undefined;
let stack: Stack;
let client: TestClient;
let bus: Bus;
const app = newClient('sent-copy-app', ['copy', 'late', 'oauth', 'delegated', 'stale']);
const ops = newClient('sent-copy-ops', [], true);
/** A system that submits over the SMTP door from its address. */
const door = newClient('sent-copy-door', ['copy']);

/** A copy_to_sent sender whose mailbox is on the test's Dovecot at `port`. */
function copySender(id: string, user: string, port: number): Record<string, unknown> {
  return {
    ...smtpSender({ id, from: user, server: smtp, auth: { user, password: PASSWORD } }),
    copy_to_sent: true,
    feedback: { imap: { host: '127.0.0.1', port, security: 'tls', servername: 'localhost', ca_file: testCa().caFile } },
  };
}

/** A copy_to_sent sender that signs in to SMTP and IMAP with its mailbox's delegated Microsoft token. */
function delegatedSender(id: string, user: string, refreshTokenEnv?: string): Record<string, unknown> {
  const base = copySender(id, user, dovecot.port);
  const auth = {
    type: 'oauth2',
    provider: 'microsoft',
    flow: 'refresh_token',
    // A tenant of its own per sender: the identity double's requests tell them apart.
    tenant_id: `tenant-${id}`,
    client_id: CLIENT_ID,
    client_secret: 'env:APP_CLIENT_SECRET',
    user,
    authority_url: idp.url,
    ...(refreshTokenEnv ? { refresh_token: `env:${refreshTokenEnv}` } : {}),
  };
  return { ...base, smtp: { ...(base.smtp as Record<string, unknown>), auth } };
}

/** "Authenticate with MFA" for `sender`, this process playing the browser; returns the scopes asked for. */
async function signIn(sender: string): Promise<string[]> {
  const { authorizeUrl } = await client.admin<BeginConsentResponse>('beginConsent', create(BeginConsentRequestSchema, { sender }), { apiKey: ops.apiKey });
  const authorize = new URL(authorizeUrl);
  const signedIn = await fetch(authorize, { redirect: 'manual' });
  const back = new URL(signedIn.headers.get('location')!);
  // RELAY_TLS_CERT is set: the public port speaks HTTPS.
  const done = await fetch(`https://127.0.0.1:${stack.ingest.ports.http}${back.pathname}${back.search}`);
  expect(done.status).toBe(200);
  return (authorize.searchParams.get('scope') ?? '').split(' ');
}

/** The messages of `user`'s Sent folder carrying the relay's message id: their bytes and flags. */
async function sentCopies(user: string, port: number, relayId: string): Promise<Array<{ source: Buffer; flags: string[] }>> {
  const imap = new ImapFlow({
    host: '127.0.0.1',
    port,
    secure: true,
    tls: { ca: testCa().caPem, servername: 'localhost' },
    auth: { user, pass: PASSWORD },
    logger: false,
  });
  await imap.connect();
  try {
    const lock = await imap.getMailboxLock('Sent');
    try {
      const uids = (await imap.search({ header: { 'X-Relay-Message-ID': relayId } }, { uid: true })) || [];
      if (uids.length === 0) return [];
      const out: Array<{ source: Buffer; flags: string[] }> = [];
      for await (const m of imap.fetch(uids, { source: true, flags: true }, { uid: true })) out.push({ source: m.source!, flags: [...(m.flags ?? [])] });
      return out;
    } finally {
      lock.release();
    }
  } finally {
    await imap.logout();
  }
}

describe.runIf(runsWith(DOVECOT_BIN))('copy_to_sent against Dovecot', () => {
  beforeAll(async () => {
    requireBinary(DOVECOT_BIN, 'apt-get install dovecot-imapd');
    // This process plays the browser that signs in at the identity platform double.
    setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
    idp = await startIdentityFake({ clients: { [CLIENT_ID]: CLIENT_SECRET } });
    // Consented when the sign-in asked for SMTP.Send only.
    const staleRefreshToken = idp.issueRefreshToken(CLIENT_ID, STALE, [SMTP_SEND, 'offline_access']);
    smtp = await startSmtpServer({
      security: 'starttls',
      users: { [COPY]: PASSWORD, [LATE]: PASSWORD },
      xoauth2: (_user, token) => idp.acceptsAccessToken(token),
    });
    // The app's tokens open its one mailbox; a user's token opens that user's mailbox if it carries IMAP's scope.
    dovecot = await startDovecot({
      users: { [COPY]: PASSWORD, [APP]: PASSWORD, [DELEGATED]: PASSWORD, [STALE]: PASSWORD },
      xoauth2: (token) => {
        const grant = idp.accessTokenGrant(token);
        if (!grant) return undefined;
        if (!grant.user) return APP;
        return grant.scopes.includes(IMAP_SCOPE) ? grant.user : undefined;
      },
    });
    // The second mailbox's server is not running yet: its copies wait for it.
    latePort = await freePort();
    stack = await startStack({
      label: 'sent-copy',
      config: {
        clients: [clientEntry(app), clientEntry(ops), { ...clientEntry(door), smtp: { allow_ips: ['127.0.0.1/32'] } }],
        senders: [
          copySender('copy', COPY, dovecot.port),
          copySender('late', LATE, latePort),
          {
            ...copySender('oauth', APP, dovecot.port),
            smtp: {
              ...(copySender('oauth', APP, dovecot.port).smtp as Record<string, unknown>),
              auth: {
                type: 'oauth2',
                provider: 'microsoft',
                flow: 'client_credentials',
                tenant_id: 'tenant-sent-copy',
                client_id: CLIENT_ID,
                client_secret: 'env:APP_CLIENT_SECRET',
                user: APP,
                authority_url: idp.url,
              },
            },
          },
          delegatedSender('delegated', DELEGATED),
          delegatedSender('stale', STALE, 'STALE_REFRESH_TOKEN'),
        ],
        delivery: { retry_initial: '200ms', retry_max: '1s' },
      },
      env: {
        RELAY_SMTP_PORT: '0',
        RELAY_TLS_CERT: testCa().certFile,
        RELAY_TLS_KEY: testCa().keyFile,
        NODE_EXTRA_CA_CERTS: testCa().caFile,
        APP_CLIENT_SECRET: CLIENT_SECRET,
        STALE_REFRESH_TOKEN: staleRefreshToken,
      },
    });
    client = stack.client(app.apiKey);
    bus = await connectBus({ servers: stack.env.NATS_URL ?? testNatsUrl(), prefix: stack.prefix, name: 'sent-copy-test' });
  }, 60_000);

  afterAll(async () => {
    await bus?.close();
    const results = await stack?.stop();
    await Promise.all([smtp?.close(), dovecot?.close(), lateDovecot?.close(), idp?.close()]);
    expect(uncleanExits(results ?? [])).toEqual([]);
  });

  it('appends the message exactly as the SMTP server received it to the Sent folder, flagged \\Seen', async () => {
    // One composed by nodemailer (an attachment), one finished by the relay itself (plain text).
    const withAttachment = await client.sendMail({
      sender: 'copy',
      to: ['ada@students.campus.example'],
      bcc: ['hidden@students.campus.example'],
      subject: 'Transcript — 2026',
      text: 'Your transcript is attached.',
      attachments: [{ filename: 'transcript.txt', contentType: 'text/plain', content: new TextEncoder().encode('grades') }],
    });
    const plain = await client.sendMail({ sender: 'copy', to: ['ada@students.campus.example'], subject: 'Plain', text: 'Hello.' });
    for (const id of [withAttachment.messageId, plain.messageId]) {
      await waitForState(client, id, [MessageState.SENT], 30_000);
      const received = await waitForMail(smtp, id);
      const copies = await eventually(async () => {
        const found = await sentCopies(COPY, dovecot.port, id);
        return found.length > 0 ? found : undefined;
      }, 20_000);
      expect(copies).toHaveLength(1);
      expect(copies[0]!.source.equals(received.raw)).toBe(true);
      expect(copies[0]!.flags).toContain('\\Seen');
      // GetMessage says so, and the message itself stays SENT.
      const shown = await eventually(async () => {
        const m = await client.getMessage(id);
        return m.sentCopy?.state === SentCopyState.COPIED ? m : undefined;
      }, 10_000);
      expect(shown.state).toBe(MessageState.SENT);
      expect(shown.sentCopy).toMatchObject({ folder: 'Sent', attempts: 1, lastError: '' });
      expect(shown.sentCopy?.at).toBeDefined();
    }
    // Bcc stays in the envelope (the recipient gets it), not in the copy; the relay's own header is in it, as sent.
    expect((await waitForMail(smtp, withAttachment.messageId)).envelope.to).toContain('hidden@students.campus.example');
    const copy = (await sentCopies(COPY, dovecot.port, withAttachment.messageId))[0]!.source.toString('latin1');
    expect(copy).not.toMatch(/hidden@students/);
    expect(copy).toContain(`X-Relay-Message-ID: ${withAttachment.messageId}\r\n`);
  }, 60_000);

  it('copies a message larger than one broker message through the body store, and removes it there', async () => {
    const big = new Uint8Array(bus.maxPayload + 256 * 1024).map((_, i) => (i * 7919) % 251);
    const res = await client.sendMail({
      sender: 'copy',
      to: ['ada@students.campus.example'],
      subject: 'Large',
      text: 'Attached.',
      attachments: [{ filename: 'scan.bin', contentType: 'application/octet-stream', content: big }],
    });
    await waitForState(client, res.messageId, [MessageState.SENT], 60_000);
    const received = await waitForMail(smtp, res.messageId);
    expect(received.raw.length).toBeGreaterThan(bus.maxPayload);
    const copies = await eventually(async () => {
      const found = await sentCopies(COPY, dovecot.port, res.messageId);
      return found.length > 0 ? found : undefined;
    }, 30_000);
    expect(copies[0]!.source.equals(received.raw)).toBe(true);
    await eventually(async () => {
      const stored = await bus.bodies.info(`sent-copy-${res.messageId}`);
      return stored === null || stored.deleted ? true : undefined;
    }, 10_000);
  }, 90_000);

  it('signs in to IMAP with the XOAUTH2 token of an OAuth2 sender', async () => {
    const res = await client.sendMail({ sender: 'oauth', to: ['ada@students.campus.example'], subject: 'App-only', text: 'x' });
    await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    const received = await waitForMail(smtp, res.messageId);
    const copies = await eventually(async () => {
      const found = await sentCopies(APP, dovecot.port, res.messageId);
      return found.length > 0 ? found : undefined;
    }, 30_000);
    expect(copies[0]!.source.equals(received.raw)).toBe(true);
    // imapflow takes OAUTHBEARER where the server offers it, else XOAUTH2: the same bearer token.
    expect(dovecot.logs.some((l) => new RegExp(`Login: user=<${APP}>, method=(XOAUTH2|OAUTHBEARER)`).test(l))).toBe(true);
  }, 60_000);

  it('copies mail submitted over the SMTP door with the Received header the relay added', async () => {
    const raw = Buffer.from(
      'From: copy@campus.example\r\nTo: ada@students.campus.example\r\nSubject: From the door\r\nMessage-ID: <door-1@campus.example>\r\n\r\nScanned.\r\n',
    );
    const res = await submit({ port: stack.ingest.ports.smtp!, security: 'none', envelope: { from: COPY, to: ['ada@students.campus.example'] }, raw });
    expect(res.ok).toBe(true);
    const id = queuedId(res.response);
    await waitForState(stack.client(door.apiKey), id, [MessageState.SENT], 30_000);
    const received = await waitForMail(smtp, id);
    const copies = await eventually(async () => {
      const found = await sentCopies(COPY, dovecot.port, id);
      return found.length > 0 ? found : undefined;
    }, 20_000);
    expect(copies).toHaveLength(1);
    expect(copies[0]!.source.equals(received.raw)).toBe(true);
    expect(copies[0]!.source.toString('latin1')).toMatch(/^Received: from [^\r]*\r\n\tby [^\r]*\(Campus Relay\)/m);
  }, 60_000);

  it('appends the copy once its IMAP server comes up; the message is sent once and stays SENT', async () => {
    const res = await client.sendMail({ sender: 'late', to: ['ada@students.campus.example'], subject: 'While IMAP is down', text: 'x' });
    const status = await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    const received = await waitForMail(smtp, res.messageId);
    // At least one append failed meanwhile and is waiting for its next try.
    await eventually(
      () => stack.smtpSenders[0]!.logs.some((l) => l.includes(res.messageId) && l.includes('could not copy the sent message')) || undefined,
      20_000,
    );
    // GetMessage shows the copy waiting, with the connection error, while the message stays SENT.
    const waiting = await eventually(async () => {
      const m = await client.getMessage(res.messageId);
      return m.sentCopy?.state === SentCopyState.RETRYING ? m : undefined;
    }, 10_000);
    expect(waiting.state).toBe(MessageState.SENT);
    expect(waiting.sentCopy?.lastError).toMatch(new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${latePort}`));
    expect(waiting.sentCopy?.attempts).toBeGreaterThanOrEqual(1);
    lateDovecot = await startDovecot({ users: { [LATE]: PASSWORD }, port: latePort });
    const copies = await eventually(async () => {
      const found = await sentCopies(LATE, latePort, res.messageId);
      return found.length > 0 ? found : undefined;
    }, 30_000);
    expect(copies).toHaveLength(1);
    expect(copies[0]!.source.equals(received.raw)).toBe(true);
    expect(mailsWithId(smtp, res.messageId)).toHaveLength(1);
    const after = await eventually(async () => {
      const m = await client.getMessage(res.messageId);
      return m.sentCopy?.state === SentCopyState.COPIED ? m : undefined;
    }, 10_000);
    expect(after.sentCopy).toMatchObject({ folder: 'Sent', lastError: '' });
    expect(after.sentCopy!.attempts).toBeGreaterThan(waiting.sentCopy!.attempts);
    // No state change came of the copy: no second SENT event (and so no second message.sent webhook).
    expect(after.state).toBe(MessageState.SENT);
    expect(after.history).toHaveLength(status.history.length);
  }, 90_000);

  it('does not append twice when a job comes again after a successful append', async () => {
    const res = await client.sendMail({ sender: 'copy', to: ['ada@students.campus.example'], subject: 'Once', text: 'once' });
    await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    const received = await waitForMail(smtp, res.messageId);
    await eventually(async () => ((await sentCopies(COPY, dovecot.port, res.messageId)).length > 0 ? true : undefined), 20_000);
    // The same job again, as the broker hands it out when the first append's ack was lost.
    const h = natsHeaders();
    h.set('Relay-Message-Id', res.messageId);
    h.set('Relay-Sender', 'copy');
    await bus.js.publish(bus.names.sentCopySubject('copy'), received.raw, { msgID: `${res.messageId}.again`, headers: h });
    await consumerSettled(bus.jsm, bus.names.sentCopyStream, bus.names.sentCopyConsumer, 20_000);
    expect(await sentCopies(COPY, dovecot.port, res.messageId)).toHaveLength(1);
    expect(stack.smtpSenders[0]!.logs.some((l) => l.includes(res.messageId) && l.includes('already in the Sent folder'))).toBe(true);
  }, 60_000);

  it('copies with the token of a delegated sign-in that asked for IMAP.AccessAsUser.All as well as SMTP.Send', async () => {
    expect(await signIn('delegated')).toEqual([SMTP_SEND, IMAP_SCOPE, 'offline_access', 'openid', 'profile']);
    const res = await client.sendMail({ sender: 'delegated', to: ['ada@students.campus.example'], subject: 'Delegated', text: 'x' });
    await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    const received = await waitForMail(smtp, res.messageId);
    const copies = await eventually(async () => {
      const found = await sentCopies(DELEGATED, dovecot.port, res.messageId);
      return found.length > 0 ? found : undefined;
    }, 30_000);
    expect(copies[0]!.source.equals(received.raw)).toBe(true);
    expect(dovecot.logs.some((l) => new RegExp(`Login: user=<${DELEGATED}>, method=(XOAUTH2|OAUTHBEARER)`).test(l))).toBe(true);
    // One token for both: the one SMTP was given is the one IMAP took.
    const refreshes = idp.tokenRequests.filter((r) => r.tenant === 'tenant-delegated' && r.grantType === 'refresh_token');
    expect(refreshes.length).toBeGreaterThan(0);
    expect(refreshes.every((r) => r.scope.split(' ').includes(IMAP_SCOPE))).toBe(true);
  }, 60_000);

  it('sends with a sign-in from before IMAP was asked for, and says to sign in again for the copy', async () => {
    const res = await client.sendMail({ sender: 'stale', to: ['ada@students.campus.example'], subject: 'Old sign-in', text: 'x' });
    await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    const waiting = await eventually(async () => {
      const m = await client.getMessage(res.messageId);
      return m.sentCopy?.state === SentCopyState.RETRYING ? m : undefined;
    }, 20_000);
    expect(waiting.state).toBe(MessageState.SENT);
    expect(waiting.sentCopy?.lastError).toContain('sign in again with Authenticate with MFA to grant IMAP.AccessAsUser.All');

    // The mailbox signs in again: the copy is made with the new grant's token.
    expect(await signIn('stale')).toContain(IMAP_SCOPE);
    const copied = await eventually(async () => {
      const m = await client.getMessage(res.messageId);
      return m.sentCopy?.state === SentCopyState.COPIED ? m : undefined;
    }, 30_000);
    expect(copied.sentCopy?.folder).toBe('Sent');
    expect(await sentCopies(STALE, dovecot.port, res.messageId)).toHaveLength(1);
    expect(mailsWithId(smtp, res.messageId)).toHaveLength(1);
  }, 90_000);
});
