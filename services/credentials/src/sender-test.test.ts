import { parseConfig, type SenderConfig } from '@relay/config';
import { answering, freePort, PROVIDER_REPLIES, replyText, startSmtpServer, testCa, type TestSmtpServer } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OAuthTokens } from './oauth-tokens.js';
import { testSender } from './sender-test.js';

const USER = 'no-reply@campus.example';
const PASSWORD = 'correct horse';
const noTokens: OAuthTokens = { get: () => Promise.reject(new Error('no tokens in this test')) };
const servers: TestSmtpServer[] = [];

function sender(port: number, extra = ''): SenderConfig {
  const text = `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: s
    from: "Campus <${USER}>"
    transport: smtp
    smtp: { host: 127.0.0.1, port: ${port}, security: starttls, servername: localhost, ca_file: "${testCa().caFile}", auth: { type: password, user: ${USER}, password: "${PASSWORD}" }${extra} }
`;
  return parseConfig(text, {}).senders[0]!;
}

const names = (r: Awaited<ReturnType<typeof testSender>>) => r.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`);
let good: TestSmtpServer;

beforeAll(async () => {
  good = await startSmtpServer({ security: 'starttls', users: { [USER]: PASSWORD } });
  servers.push(good);
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

describe('testSender', () => {
  it('passes every step and sends a test message', async () => {
    const r = await testSender(sender(good.port), 's', noTokens, { to: 'it@campus.example' });
    expect(names(r)).toEqual(['connect:ok', 'TLS:ok', 'auth:ok', 'send:ok']);
    expect(r.ok).toBe(true);
    expect(r.steps[2]!.detail).toMatch(/server offers AUTH PLAIN LOGIN; 235/);
    expect(good.messages.at(-1)!.envelope).toMatchObject({ from: USER, to: ['it@campus.example'] });
  });

  it('stops at an untrusted certificate with the ca_file remedy', async () => {
    const bad = await startSmtpServer({ security: 'starttls', users: { [USER]: PASSWORD }, cert: testCa().untrusted });
    servers.push(bad);
    const r = await testSender(sender(bad.port), 's', noTokens);
    expect(names(r)).toEqual(['connect:ok', 'TLS:failed']);
    expect(r.remedy).toMatch(/ca_file/);
  });

  it('explains 5.7.139 (SMTP AUTH disabled for the tenant)', async () => {
    const disabled = await startSmtpServer({
      security: 'starttls',
      authFailure: { code: 535, message: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.' },
    });
    servers.push(disabled);
    const r = await testSender(sender(disabled.port), 's', noTokens);
    expect(names(r)).toEqual(['connect:ok', 'TLS:ok', 'auth:failed']);
    expect(r.steps.at(-1)!.detail).toMatch(/535 5\.7\.139/);
    expect(r.remedy).toMatch(/Authenticated SMTP/);
  });

  // Each provider reply arrives at its own step, whole (multi-line ones too), with its own remedy.
  it.each([
    ['basicAuthRetired', 'auth', /retired basic authentication.*"Authenticate with MFA" \(or `relay senders consent <sender>`\)/s],
    ['smtpAuthDisabledForTenant', 'auth', /switched off for the whole tenant/],
    ['smtpAuthDisabledForMailbox', 'auth', /switched off for this mailbox only/],
    ['tokenExpiringSoon', 'auth', /expire within minutes/],
    ['applicationSpecificPasswordRequired', 'auth', /App passwords/],
    ['gmailBadCredentials', 'auth', /Gmail refused the user name or password/],
    ['sendAsDenied', 'send', /Delegation → Send As/],
    ['gmailDailyUserLimit', 'send', /Google account reached its daily sending limit/],
    ['relayDailyCustomerLimit', 'send', /organisation reached the daily limit of the Google Workspace SMTP relay service/],
    ['relayPeakCustomerLimit', 'send', /Google defers its relay mail/],
  ] as const)('shows the remedy for %s at the %s step', async (name, stepName, remedy) => {
    const reply = PROVIDER_REPLIES[name];
    const server = await startSmtpServer({ security: 'starttls', users: { [USER]: PASSWORD }, ...answering(reply) });
    servers.push(server);
    const r = await testSender(sender(server.port), 's', noTokens, { to: 'it@campus.example' });
    expect(r.ok).toBe(false);
    expect(r.steps.at(-1)).toMatchObject({ name: stepName, ok: false });
    expect(r.steps.at(-1)!.detail).toContain(replyText(reply));
    expect(r.remedy).toMatch(remedy);
    expect(server.messages).toHaveLength(0);
  });

  it('suggests STARTTLS when the server offers no AUTH on an unencrypted connection', async () => {
    const plain = { ...sender(good.port), smtp: { ...sender(good.port).smtp!, security: 'none' as const } };
    const r = await testSender(plain, 's', noTokens);
    expect(r.ok).toBe(false);
    // This server lists AUTH but answers 538 until STARTTLS; others list none: the same remedy.
    expect(r.steps.at(-1)).toMatchObject({ name: 'auth', ok: false, detail: 'server offers AUTH PLAIN LOGIN; 538 Error: Must issue a STARTTLS command first' });
    expect(r.remedy).toBe(
      `The server takes no AUTH before TLS. Set security: starttls (port ${good.port}), or security: tls on port 465, so the relay encrypts the connection and then signs in.`,
    );
  });

  it('says when nothing answers', async () => {
    const r = await testSender(sender(await freePort()), 's', noTokens);
    expect(names(r)).toEqual(['connect:failed']);
    expect(r.remedy).toMatch(/^check smtp\.host and smtp\.port .*allow outbound TCP \d+ from the relay to 127\.0\.0\.1 \(firewall\)$/);
  });
});
