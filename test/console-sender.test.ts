import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chromium, type Browser, type Page } from 'playwright-core';
import {
  clientEntry,
  freePort,
  type IdentityFake,
  newClient,
  smtpSender,
  startIdentityFake,
  startSmtpServer,
  startStack,
  type Stack,
  type TestSmtpServer,
  testCa,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A sender's page in chromium (playwright-core, the demo sign-in): its pacing and daily-cap gauges
 * and recent messages after mail went out, each message linking to its timeline; and for an
 * OAuth2 mailbox, "Authenticate with MFA" at the identity platform double, after which the page
 * shows who consented, then when the token was refreshed.
 */
const CHROMIUM = process.env.RELAY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console sender page tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set RELAY_CHROMIUM)`);

const CLIENT_ID = 'relay-app';
const CLIENT_SECRET = 'app-client-secret-Sp4~value';
const app = newClient('app', ['helpdesk', 'mailbox']);
const token = randomBytes(32).toString('base64url');
let idp: IdentityFake;
/** helpdesk's server (no sign-in). */
let smtp: TestSmtpServer;
/** mailbox's server: takes only access tokens the identity platform double issued. */
let oauthSmtp: TestSmtpServer;
let stack: Stack;
let browser: Browser;
let base: string;
let page: Page;

describe.skipIf(!haveChromium)('sender page in chromium', () => {
  beforeAll(async () => {
    idp = await startIdentityFake({ clients: { [CLIENT_ID]: CLIENT_SECRET } });
    smtp = await startSmtpServer();
    oauthSmtp = await startSmtpServer({ security: 'starttls', xoauth2: (_user, t) => idp.acceptsAccessToken(t) });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const mailbox = smtpSender({ id: 'mailbox', server: { port: oauthSmtp.port } }) as { smtp: Record<string, unknown> };
    mailbox.smtp.auth = {
      type: 'oauth2',
      provider: 'microsoft',
      flow: 'refresh_token',
      tenant_id: 'tenant-mfa',
      client_id: CLIENT_ID,
      client_secret: 'env:APP_CLIENT_SECRET',
      // Ten days left: the Test view shows the expiry step as a warning.
      client_secret_expires_at: new Date(Date.now() + 10 * 86_400_000 + 3_600_000).toISOString(),
      user: 'mailbox@campus.example',
      authority_url: idp.url,
    };
    stack = await startStack({
      label: 'sender-page',
      config: {
        clients: [clientEntry(app)],
        senders: [{ ...smtpSender({ id: 'helpdesk', server: { port: smtp.port }, security: 'none' }), rate: { daily_recipients: 100 } }, mailbox],
      },
      env: {
        RELAY_HTTP_PORT: String(port),
        RELAY_PUBLIC_URL: base,
        RELAY_CONSOLE_DEMO_TOKEN: token,
        NODE_EXTRA_CA_CERTS: testCa().caFile,
        APP_CLIENT_SECRET: CLIENT_SECRET,
      },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    // The sign-in window goes to the identity platform double, whose certificate the test CA made.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    page = await context.newPage();
    await page.goto(`${base}/auth/demo?token=${token}`);
    await page.getByRole('heading', { name: 'Senders' }).waitFor();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await Promise.all([smtp?.close(), oauthSmtp?.close(), idp?.close()]);
  });

  it('shows the daily cap and queue as gauges and the recent messages, each linking to its timeline', async () => {
    const client = stack.client(app.apiKey);
    const first = await client.sendMail({
      sender: 'helpdesk',
      to: ['ada@students.campus.example', 'bo@students.campus.example'],
      subject: 'Gauge one',
      text: 'x',
    });
    await client.sendMail({ sender: 'helpdesk', to: ['cy@students.campus.example'], subject: 'Gauge two', text: 'x' });
    await smtp.waitForMessages(2);

    await page.goto(`${base}/#/senders/helpdesk`);
    await page.getByRole('heading', { name: 'Sender helpdesk' }).waitFor();
    const today = page.getByRole('meter', { name: 'Recipients today' });
    // The page reads the figures again every few seconds; the scheduler counts each release.
    await expect.poll(() => today.getAttribute('aria-valuetext'), { timeout: 30_000 }).toBe('3 of 100 (3%)');
    expect(await today.getAttribute('max')).toBe('100');
    expect(await page.getByRole('meter', { name: 'Failed (24 h)' }).getAttribute('aria-valuetext')).toBe('0 messages');
    for (const name of ['Queued', 'Held by pacing', 'Retrying']) await page.getByRole('meter', { name }).waitFor();
    expect(await page.getByRole('region', { name: 'Pacing and daily cap' }).textContent()).toMatch(/Pace\s*100 recipients a day/);

    const recent = page.getByRole('table', { name: 'Recent messages' });
    await recent.getByRole('link', { name: 'Gauge two' }).waitFor({ timeout: 20_000 });
    expect(await recent.getByRole('row').count()).toBe(3);
    await expect.poll(() => recent.getByRole('row', { name: /Gauge one/ }).textContent(), { timeout: 20_000 }).toMatch(/sent/);

    await recent.getByRole('link', { name: 'Gauge one' }).click();
    await page.getByRole('heading', { name: `Message ${first.messageId}` }).waitFor();
    await page
      .getByRole('list', { name: `History of message ${first.messageId}` })
      .getByText('sent', { exact: true })
      .waitFor();
  });

  it('after "Authenticate with MFA" shows who consented, then when the token was refreshed', async () => {
    await page.goto(`${base}/#/senders/mailbox`);
    const signIn = page.getByRole('region', { name: 'Mailbox sign-in' });
    await signIn.getByText('nobody yet').waitFor();
    expect(await signIn.textContent()).toMatch(/Token last refreshed\s*not yet/);

    const popup = page.context().waitForEvent('page');
    await signIn.getByRole('button', { name: 'Authenticate with MFA' }).click();
    const window = await popup;
    await window.getByText(/is authorized/).waitFor({ timeout: 20_000 });
    await window.close();

    // The page notices the finished sign-in on its own.
    const status = signIn.getByRole('status');
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toMatch(/^Signed in as mailbox@campus\.example at /);
    await expect.poll(() => signIn.textContent(), { timeout: 10_000 }).toMatch(/Consented by\s*mailbox@campus\.example, \d/);

    await page.getByRole('button', { name: 'Test', exact: true }).click();
    await page.getByText('All steps passed. One needs attention soon.').waitFor({ timeout: 60_000 });
    const warning = (await page.locator('ol.steps li.warn').textContent()) ?? '';
    expect(warning).toMatch(/^⚠ credential expiry client secret expires \S+ \(in 10 days\); refresh token last used .*Add a new client secret in Entra ID/);
    await page.reload();
    await page.getByRole('heading', { name: 'Sender mailbox' }).waitFor();
    await expect.poll(() => page.getByRole('region', { name: 'Mailbox sign-in' }).textContent(), { timeout: 10_000 }).not.toMatch(/not yet/);
    const text = (await page.getByRole('region', { name: 'Mailbox sign-in' }).textContent()) ?? '';
    expect(text).toMatch(/Token last refreshed\s*\d/);
    expect(text).toMatch(/Token expires\s*\d/);
    for (const secret of [CLIENT_SECRET, ...idp.issuedRefreshTokens(), ...idp.issuedAccessTokens()]) expect(await page.content()).not.toContain(secret);
  });
});
