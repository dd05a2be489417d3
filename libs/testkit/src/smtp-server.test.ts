import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createTransport } from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { answering, PROVIDER_REPLIES, replyText } from './provider-replies.js';
import { startSmtpServer, type SmtpServerOptions, type TestSmtpServer } from './smtp-server.js';
import { testCa } from './tls.js';

const ca = testCa();
type SmtpClientError = Error & { code?: string; responseCode?: number; response?: string };

describe('startSmtpServer', () => {
  const servers: TestSmtpServer[] = [];
  const start = async (opts: SmtpServerOptions) => {
    const s = await startSmtpServer(opts);
    servers.push(s);
    return s;
  };
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('captures and parses a plain message with its envelope', async () => {
    const smtp = await start({ security: 'none' });
    const client = createTransport({ host: smtp.host, port: smtp.port, secure: false, ignoreTLS: true });
    await client.sendMail({
      from: 'no-reply@campus.example',
      to: ['a@x.example', 'b@x.example'],
      bcc: 'hidden@x.example',
      subject: 'Grades are out',
      text: 'Hello',
      attachments: [{ filename: 'a.txt', content: 'attached' }],
    });
    const [m] = await smtp.waitForMessages(1);
    expect(m!.envelope).toEqual({ from: 'no-reply@campus.example', to: ['a@x.example', 'b@x.example', 'hidden@x.example'] });
    expect(m!.secure).toBe(false);
    expect(m!.user).toBeUndefined();
    expect(m!.parsed.subject).toBe('Grades are out');
    expect(m!.parsed.text?.trim()).toBe('Hello');
    expect(m!.parsed.attachments[0]?.content.toString()).toBe('attached');
    expect(m!.raw.toString()).toContain('Subject: Grades are out');
    expect(smtp.connections).toBe(1);
  });

  it('requires STARTTLS before AUTH and then accepts PLAIN and LOGIN for the configured users', async () => {
    const smtp = await start({ security: 'starttls', users: { 'user@campus.example': 'pw' } });
    const base = { host: 'localhost', port: smtp.port, secure: false, tls: { ca: ca.caPem } } as const;
    const auth = { user: 'user@campus.example', pass: 'pw' };

    const plaintext = createTransport({ ...base, ignoreTLS: true, auth });
    const refused = (await plaintext
      .sendMail({ from: 'user@campus.example', to: 'x@y.example', text: 'x' })
      .catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(refused.responseCode).toBe(538);

    const noAuth = createTransport({ ...base, requireTLS: true });
    const unauth = (await noAuth.sendMail({ from: 'user@campus.example', to: 'x@y.example', text: 'x' }).catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(unauth.responseCode).toBe(530);

    for (const method of ['PLAIN', 'LOGIN']) {
      const client = createTransport({ ...base, requireTLS: true, auth, authMethod: method });
      await client.sendMail({ from: 'user@campus.example', to: 'x@y.example', subject: method, text: 'x' });
    }
    const messages = await smtp.waitForMessages(2);
    expect(messages.map((m) => [m.parsed.subject, m.secure, m.user, m.authMethod])).toEqual([
      ['PLAIN', true, 'user@campus.example', 'PLAIN'],
      ['LOGIN', true, 'user@campus.example', 'LOGIN'],
    ]);
  });

  it('answers a wrong password with 535 and records the attempt', async () => {
    const smtp = await start({ security: 'tls', users: { u: 'right' } });
    const client = createTransport({ host: 'localhost', port: smtp.port, secure: true, tls: { ca: ca.caPem }, auth: { user: 'u', pass: 'wrong' } });
    const err = (await client.verify().catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(err.code).toBe('EAUTH');
    expect(err.response).toBe('535 5.7.3 Authentication unsuccessful');
    expect(smtp.authAttempts).toEqual([{ method: 'PLAIN', username: 'u', accepted: false }]);
  });

  it('serves implicit TLS under the names of the certificate', async () => {
    const smtp = await start({ security: 'tls' });
    for (const servername of ['localhost', 'smtp.test.local']) {
      const client = createTransport({ host: '127.0.0.1', port: smtp.port, secure: true, tls: { ca: ca.caPem, servername } });
      await client.sendMail({ from: 'a@x.example', to: 'b@x.example', subject: servername, text: 'x' });
    }
    const messages = await smtp.waitForMessages(2);
    expect(messages.every((m) => m.secure)).toBe(true);
  });

  it('presents the untrusted certificate when asked, which a client trusting the test CA refuses', async () => {
    const smtp = await start({ security: 'tls', cert: ca.untrusted });
    const client = createTransport({ host: 'localhost', port: smtp.port, secure: true, tls: { ca: ca.caPem }, connectionTimeout: 5000 });
    const err = (await client.verify().catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(`${err.code} ${err.message}`).toMatch(/self-signed certificate|DEPTH_ZERO_SELF_SIGNED_CERT/i);
    expect(smtp.messages).toHaveLength(0);
  });

  it('accepts XOAUTH2 tokens the callback approves', async () => {
    const smtp = await start({ security: 'starttls', xoauth2: (user, token) => user === 'box@campus.example' && token === 'good' });
    const client = createTransport({
      host: 'localhost',
      port: smtp.port,
      requireTLS: true,
      tls: { ca: ca.caPem },
      auth: { type: 'OAuth2', user: 'box@campus.example', accessToken: 'good' },
    });
    await client.sendMail({ from: 'box@campus.example', to: 'b@x.example', text: 'x' });
    const [m] = await smtp.waitForMessages(1);
    expect(m).toMatchObject({ user: 'box@campus.example', authMethod: 'XOAUTH2', secure: true });
    expect(smtp.authAttempts).toEqual([{ method: 'XOAUTH2', username: 'box@campus.example', accepted: true, accessToken: 'good' }]);
  });

  it('refuses a bad XOAUTH2 token the way Gmail and Microsoft do: a 334 JSON challenge, then 535 5.7.3', async () => {
    const smtp = await start({ security: 'tls', xoauth2: () => false });
    const session = await rawTlsSession(smtp.port);
    try {
      expect(await session.reply()).toMatch(/^220 /);
      expect(await session.send('EHLO client.test')).toMatch(/250[ -]AUTH XOAUTH2/);
      const token = Buffer.from('user=box@campus.example\x01auth=Bearer expired\x01\x01').toString('base64');
      const challenge = await session.send(`AUTH XOAUTH2 ${token}`);
      expect(challenge).toMatch(/^334 /);
      expect(JSON.parse(Buffer.from(challenge.slice(4), 'base64').toString())).toMatchObject({ status: '401' });
      expect(await session.send('')).toBe('535 5.7.3 Authentication unsuccessful');
    } finally {
      session.close();
    }

    const client = createTransport({
      host: 'localhost',
      port: smtp.port,
      secure: true,
      tls: { ca: ca.caPem },
      auth: { type: 'OAuth2', user: 'box@campus.example', accessToken: 'expired' },
    });
    const err = (await client.verify().catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(err.code).toBe('EAUTH');
    expect(err.response).toContain('535 5.7.3 Authentication unsuccessful');
  });

  it('fails every authentication with a configured reply', async () => {
    const message = '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.';
    const smtp = await start({ security: 'starttls', users: { u: 'p' }, authFailure: { code: 535, message } });
    const client = createTransport({ host: 'localhost', port: smtp.port, requireTLS: true, tls: { ca: ca.caPem }, auth: { user: 'u', pass: 'p' } });
    const err = (await client.verify().catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(err.responseCode).toBe(535);
    expect(err.response).toBe(`535 ${message}`);
    expect(smtp.authAttempts[0]?.accepted).toBe(false);
  });

  it("answers Gmail's multi-line AUTH reply line by line, as nodemailer reports it", async () => {
    const smtp = await start({ security: 'starttls', users: { u: 'p' }, ...answering(PROVIDER_REPLIES.gmailBadCredentials) });
    const client = createTransport({ host: 'localhost', port: smtp.port, requireTLS: true, tls: { ca: ca.caPem }, auth: { user: 'u', pass: 'p' } });
    const err = (await client.verify().catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(err.responseCode).toBe(535);
    expect(err.response).toBe(
      '535-5.7.8 Username and Password not accepted. For more information, go to\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials af79cd13be357-794f3061475sm18893085a.74 - gsmtp',
    );
    expect(err.response).toBe(replyText(PROVIDER_REPLIES.gmailBadCredentials));
  });

  it('answers the end of DATA with a provider reply (Gmail 550 5.4.5) and keeps no message', async () => {
    const smtp = await start({ ...answering(PROVIDER_REPLIES.gmailDailyUserLimit) });
    const client = createTransport({ host: smtp.host, port: smtp.port, ignoreTLS: true });
    const err = (await client.sendMail({ from: 'a@x.example', to: 'b@x.example', text: 'x' }).catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(err.responseCode).toBe(550);
    expect(err.response).toBe(replyText(PROVIDER_REPLIES.gmailDailyUserLimit));
    expect(err.response).toMatch(/^550-5\.4\.5 Daily user sending limit exceeded\. .*\n550-5\.4\.5 sending limits go to\n550 5\.4\.5 {2}https:/);
    expect(smtp.messages).toHaveLength(0);
  });

  it('lets the test answer DATA (here: try later once) and RCPT with replies of its own', async () => {
    const smtp = await start({
      reply: (ctx) => {
        if (ctx.phase === 'rcpt' && ctx.rcpt === 'denied@x.example')
          return { code: 550, message: '5.7.60 SMTP; Client does not have permissions to send as this sender' };
        if (ctx.phase === 'data' && ctx.attempt === 1) return { code: 450, message: '4.7.0 try later' };
        return undefined;
      },
    });
    const client = createTransport({ host: smtp.host, port: smtp.port, ignoreTLS: true });
    const mail = { from: 'a@x.example', to: 'b@x.example', text: 'x' };

    const first = (await client.sendMail(mail).catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(first.responseCode).toBe(450);
    expect(first.response).toBe('450 4.7.0 try later');
    expect(smtp.messages).toHaveLength(0);

    await client.sendMail(mail);
    expect(smtp.messages).toHaveLength(1);

    const denied = (await client.sendMail({ ...mail, to: 'denied@x.example' }).catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(denied.responseCode).toBe(550);
    expect(denied.response).toContain('5.7.60');
  });

  it('refuses a message over maxSize with 552', async () => {
    const smtp = await start({ maxSize: 1000 });
    const client = createTransport({ host: smtp.host, port: smtp.port, ignoreTLS: true });
    const err = (await client.sendMail({ from: 'a@x.example', to: 'b@x.example', text: 'x'.repeat(5000) }).catch((e: SmtpClientError) => e)) as SmtpClientError;
    expect(err.responseCode).toBe(552);
    expect(smtp.messages).toHaveLength(0);
  });

  it('waitForMessages says how many arrived when it times out', async () => {
    const smtp = await start({});
    await expect(smtp.waitForMessages(2, 50)).rejects.toThrow('expected 2 message(s) within 50 ms, but 0 arrived');
  });

  it('closes promptly with an idle pooled client still connected', async () => {
    const smtp = await startSmtpServer({});
    const client = createTransport({ pool: true, host: smtp.host, port: smtp.port, ignoreTLS: true });
    client.on('error', () => {});
    await client.sendMail({ from: 'a@x.example', to: 'b@x.example', text: 'x' });
    const t0 = Date.now();
    await smtp.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    await smtp.close();
    client.close();
  });

  it('closes promptly with a client that never answers', async () => {
    const smtp = await startSmtpServer({ security: 'starttls' });
    const socket = netConnect({ host: smtp.host, port: smtp.port });
    socket.on('error', () => {});
    // Keep the socket open past the server's FIN, like a hung client.
    socket.on('end', () => {});
    socket.allowHalfOpen = true;
    await new Promise((resolve) => socket.once('data', resolve));
    const t0 = Date.now();
    await smtp.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(smtp.connections).toBe(1);
    socket.destroy();
  });
});

/** A hand-driven SMTP session, for exchanges a client library would hide. */
async function rawTlsSession(port: number) {
  const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.caPem });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  let buffer = '';
  const waiting: Array<(reply: string) => void> = [];
  const unread: string[] = [];
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    // A reply ends with a line whose code is followed by a space, not a dash.
    let m: RegExpExecArray | null;
    while ((m = /^(?:\d{3}-.*\r\n)*\d{3}(?: .*)?\r\n/.exec(buffer))) {
      buffer = buffer.slice(m[0].length);
      const r = m[0].trimEnd();
      const waiter = waiting.shift();
      if (waiter) waiter(r);
      else unread.push(r);
    }
  });
  const reply = () => new Promise<string>((resolve) => (unread.length ? resolve(unread.shift()!) : waiting.push(resolve)));
  return {
    reply,
    send(line: string) {
      const r = reply();
      socket.write(`${line}\r\n`);
      return r;
    },
    close: () => socket.destroy(),
  };
}
