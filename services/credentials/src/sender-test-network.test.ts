import { parseConfig, type SenderConfig } from '@relay/config';
import { freePort, makeAppCertificate, startSmtpServer, testCa, type AppCertificate, type TestSmtpServer } from '@relay/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import type { OAuthTokens } from './oauth-tokens.js';
import { testSender } from './sender-test.js';

// TestSender against servers that cannot be reached: the step names host:port and the cause in
// words, the remedy says what to change.

const noTokens: OAuthTokens = { get: () => Promise.reject(new Error('no tokens in this test')) };
const servers: TestSmtpServer[] = [];
const certificates: AppCertificate[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  for (const c of certificates) c.remove();
});

function sender(smtp: string): SenderConfig {
  const text = `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: s
    from: no-reply@campus.example
    transport: smtp
    smtp: { ${smtp}, auth: { type: password, user: no-reply@campus.example, password: secret } }
`;
  return parseConfig(text, {}).senders[0]!;
}

const steps = (r: Awaited<ReturnType<typeof testSender>>) => r.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`);

describe('TestSender toward an unreachable SMTP server', () => {
  it('refused: the connect step names host:port, the remedy the port to allow', async () => {
    const port = await freePort();
    const r = await testSender(sender(`host: 127.0.0.1, port: ${port}, security: starttls`), 's', noTokens);
    expect(steps(r)).toEqual(['connect:failed']);
    expect(r.steps[0]!.detail).toBe(`127.0.0.1:${port}: connection refused`);
    expect(r.remedy).toBe(
      `check smtp.host and smtp.port (submission uses port 587 with security: starttls, or port 465 with security: tls), and allow outbound TCP ${port} from the relay to 127.0.0.1 (firewall)`,
    );
  });

  it('DNS: the host name that does not resolve', async () => {
    const r = await testSender(sender('host: smtp.nowhere.invalid, port: 587, security: starttls'), 's', noTokens);
    expect(steps(r)).toEqual(['connect:failed']);
    expect(r.steps[0]!.detail).toMatch(/^smtp\.nowhere\.invalid:587: DNS lookup of smtp\.nowhere\.invalid failed \((ENOTFOUND|EAI_AGAIN)\)$/);
    expect(r.remedy).toBe("check smtp.host for typos and that the relay's DNS resolves smtp.nowhere.invalid");
  });

  it('TLS: the certificate’s names against the name asked for, and an expired certificate’s end', async () => {
    const wrongName = await startSmtpServer({ security: 'starttls', cert: testCa() });
    servers.push(wrongName);
    const a = await testSender(
      sender(`host: 127.0.0.1, port: ${wrongName.port}, security: starttls, servername: mail.campus.example, ca_file: "${testCa().caFile}"`),
      's',
      noTokens,
    );
    expect(steps(a)).toEqual(['connect:ok', 'TLS:failed']);
    expect(a.steps[1]!.detail).toBe(
      `127.0.0.1:${wrongName.port}: TLS failed: the certificate is for localhost, 127.0.0.1, smtp.test.local, not mail.campus.example`,
    );
    expect(a.remedy).toMatch(/^set smtp\.host to a name the certificate is for \(localhost, 127\.0\.0\.1, smtp\.test\.local\)/);

    const expired = makeAppCertificate({ commonName: 'localhost', notBefore: new Date(Date.UTC(2025, 0, 1)), notAfter: new Date(Date.UTC(2025, 11, 31)) });
    certificates.push(expired);
    const old = await startSmtpServer({ security: 'starttls', cert: expired });
    servers.push(old);
    const b = await testSender(
      sender(`host: 127.0.0.1, port: ${old.port}, security: starttls, servername: localhost, ca_pem: ${JSON.stringify(expired.certPem)}`),
      's',
      noTokens,
    );
    expect(steps(b)).toEqual(['connect:ok', 'TLS:failed']);
    expect(b.steps[1]!.detail).toBe(`127.0.0.1:${old.port}: TLS failed: the certificate for localhost expired on 2025-12-31`);
    expect(b.remedy).toBe('the administrator of 127.0.0.1 must renew its certificate; the relay does not send over an expired one');
  });
});
