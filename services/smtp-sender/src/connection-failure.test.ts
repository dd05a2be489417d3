import { createServer, type Server, type Socket } from 'node:net';
import nodemailer from 'nodemailer';
import { parseConfig, smtpConnectionOptions, type SmtpConfig } from '@relay/config';
import { freePort, makeAppCertificate, startSmtpServer, testCa, type AppCertificate, type TestSmtpServer } from '@relay/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { classifySmtpFailure } from './classify.js';

/** A failure as last_error shows it: the message, then its remedy. */
const lastError = (e: { message: string; remedy?: string }) => (e.remedy ? `${e.message} — ${e.remedy}` : e.message);

// Real local conditions, connected as delivery connects; the outcome's text is last_error.

const servers: TestSmtpServer[] = [];
const certificates: AppCertificate[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  for (const c of certificates) c.remove();
});

function smtpOf(fields: string): SmtpConfig {
  const text = `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: s
    from: no-reply@campus.example
    transport: smtp
    smtp: { ${fields} }
`;
  return parseConfig(text, {}).senders[0]!.smtp!;
}

async function outcome(smtp: SmtpConfig) {
  const transport = nodemailer.createTransport(smtpConnectionOptions(smtp));
  try {
    await transport.sendMail({ from: 'no-reply@campus.example', to: 'it@campus.example', text: 'hello' });
  } catch (err) {
    return classifySmtpFailure(err as Error, smtp);
  } finally {
    transport.close();
  }
  throw new Error('expected a failure');
}

const caPem = (pem: string) => JSON.stringify(pem);

describe('an SMTP server that cannot be reached', () => {
  it('names a refused connection with host:port and the port to allow', async () => {
    const port = await freePort();
    const e = await outcome(smtpOf(`host: 127.0.0.1, port: ${port}, security: starttls`));
    expect(e.retryable).toBe(true);
    expect(lastError(e)).toBe(
      `cannot connect to the SMTP server at 127.0.0.1:${port}: connection refused — check smtp.host and smtp.port (submission uses port 587 with security: starttls, or port 465 with security: tls), and allow outbound TCP ${port} from the relay to 127.0.0.1 (firewall)`,
    );
    expect(e.remedy).toMatch(/^check smtp\.host and smtp\.port/);
  });

  it('names a host name that does not resolve', async () => {
    const e = await outcome(smtpOf('host: smtp.nowhere.invalid, port: 587, security: starttls'));
    expect(lastError(e)).toMatch(
      /^cannot connect to the SMTP server at smtp\.nowhere\.invalid:587: DNS lookup of smtp\.nowhere\.invalid failed \((ENOTFOUND|EAI_AGAIN)\) — check smtp\.host for typos and that the relay's DNS resolves smtp\.nowhere\.invalid$/,
    );
  });

  it('names a server that accepts and never greets', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    try {
      const e = await outcome(smtpOf(`host: 127.0.0.1, port: ${port}, security: starttls, timeouts: { greeting: 300ms }`));
      expect(lastError(e)).toBe(
        `cannot connect to the SMTP server at 127.0.0.1:${port}: connected, but the server sent no greeting — check smtp.security against smtp.port (submission uses port 587 with security: starttls, or port 465 with security: tls); a proxy or filter may be holding the connection`,
      );
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe('a certificate the relay refuses', () => {
  const serve = async (cert: { certPem: string; keyPem: string }) => {
    const server = await startSmtpServer({ security: 'starttls', cert });
    servers.push(server);
    return server;
  };

  it('names the names the certificate has against the name asked for', async () => {
    const server = await serve(testCa());
    const e = await outcome(
      smtpOf(`host: 127.0.0.1, port: ${server.port}, security: starttls, servername: mail.campus.example, ca_pem: ${caPem(testCa().caPem)}`),
    );
    expect(lastError(e)).toBe(
      `cannot connect to the SMTP server at 127.0.0.1:${server.port}: TLS failed: the certificate is for localhost, 127.0.0.1, smtp.test.local, not mail.campus.example — set smtp.host to a name the certificate is for (localhost, 127.0.0.1, smtp.test.local), or set smtp.servername to that name when the relay reaches the server under another one`,
    );
  });

  it('names the day an expired certificate ended', async () => {
    const day = 86_400_000;
    const expired = makeAppCertificate({ commonName: 'localhost', notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.UTC(2026, 0, 15)) });
    certificates.push(expired);
    const server = await serve(expired);
    const e = await outcome(smtpOf(`host: 127.0.0.1, port: ${server.port}, security: starttls, servername: localhost, ca_pem: ${caPem(expired.certPem)}`));
    expect(lastError(e)).toBe(
      `cannot connect to the SMTP server at 127.0.0.1:${server.port}: TLS failed: the certificate for localhost expired on 2026-01-15 — the administrator of 127.0.0.1 must renew its certificate; the relay does not send over an expired one`,
    );
  });

  it('names a self-signed certificate and an untrusted issuer, without Node’s hints', async () => {
    const selfSigned = await serve(testCa().untrusted);
    const a = await outcome(smtpOf(`host: 127.0.0.1, port: ${selfSigned.port}, security: starttls`));
    expect(lastError(a)).toBe(
      `cannot connect to the SMTP server at 127.0.0.1:${selfSigned.port}: TLS failed: the certificate for localhost, 127.0.0.1 is self-signed, and the relay does not trust it — if 127.0.0.1 uses its own or a private CA, give the relay that CA's certificate as smtp.ca_pem (or smtp.ca_file); a server with a public certificate must send its intermediate certificates too`,
    );
    const privateCa = await serve(testCa());
    const b = await outcome(smtpOf(`host: 127.0.0.1, port: ${privateCa.port}, security: starttls`));
    expect(lastError(b)).toMatch(
      new RegExp(
        `^cannot connect to the SMTP server at 127\\.0\\.0\\.1:${privateCa.port}: TLS failed: the certificate for localhost, 127\\.0\\.0\\.1, smtp\\.test\\.local is issued by "Campus Relay Test CA", which the relay does not trust — if 127\\.0\\.0\\.1 uses its own or a private CA, give the relay that CA's certificate as smtp\\.ca_pem`,
      ),
    );
    for (const e of [a, b]) expect(lastError(e)).not.toMatch(/use-system-ca|Node\.js/);
  });
});
