import { existsSync, mkdirSync } from 'node:fs';
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
 * The console as people use it, in Debian's chromium driven by playwright-core, against a whole
 * stack whose relay.yaml has a `console:` section pointing at the identity platform double: an
 * admin signs in through the real code + PKCE redirect, creates a sender from a preset, sets its
 * password, tests it (a tenant with SMTP AUTH off, then a server that accepts), and handles
 * messages; an owner sees only their own sender. Each page is saved as a screenshot under
 * test-results/console/.
 */
const CHROMIUM = process.env.RELAY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console OIDC browser tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set RELAY_CHROMIUM)`);

const SHOTS = 'test-results/console';
const ADMIN = 'ada@campus.example';
const OWNER = 'olive@campus.example';
const PASSWORD = 'news-password-1';
const app = newClient('app', ['helpdesk', 'library']);
let idp: IdentityFake;
/** Refuses every sign-in the way a tenant with SMTP AUTH turned off does. */
let tenantOff: TestSmtpServer;
/** Accepts the news sender's password. */
let accepting: TestSmtpServer;
/** helpdesk's server: refuses one recipient permanently while `refuseNobody` is true. */
let helpdeskSmtp: TestSmtpServer;
let refuseNobody = true;
let stack: Stack;
let browser: Browser;
let base: string;
let page: Page;

const shot = (p: Page, name: string) => p.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });

/** Signs in as `account` through /auth/login, the identity platform and /auth/callback, as a browser does. */
async function signIn(p: Page, account: string) {
  await p.goto(base);
  idp.signInAs(account);
  try {
    await p.getByRole('link', { name: 'Sign in with your campus account' }).click();
    await p.getByRole('heading', { name: 'Senders' }).waitFor();
  } finally {
    idp.signInAs(undefined);
  }
}

describe.skipIf(!haveChromium)('web console with OpenID Connect sign-in, in chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    idp = await startIdentityFake({ clients: { 'console-app': 'console-secret' } });
    tenantOff = await startSmtpServer({
      authFailure: { code: 535, message: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.' },
    });
    accepting = await startSmtpServer({ users: { 'news@campus.example': PASSWORD } });
    helpdeskSmtp = await startSmtpServer({
      reply: (ctx) =>
        ctx.phase === 'rcpt' && refuseNobody && ctx.rcpt.startsWith('nobody@') ? { code: 550, message: '5.1.1 The email account does not exist.' } : undefined,
    });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    stack = await startStack({
      label: 'console-oidc',
      config: {
        console: {
          issuer: `${idp.url}/t1/v2.0`,
          client_id: 'console-app',
          client_secret: 'env:CONSOLE_SECRET',
          admins: [ADMIN],
        },
        clients: [clientEntry(app)],
        senders: [
          smtpSender({ id: 'helpdesk', server: { port: helpdeskSmtp.port }, security: 'none' }),
          { ...smtpSender({ id: 'library', server: { port: accepting.port }, security: 'none' }), owners: [OWNER] },
        ],
      },
      env: { RELAY_HTTP_PORT: String(port), RELAY_PUBLIC_URL: base, CONSOLE_SECRET: 'console-secret', NODE_EXTRA_CA_CERTS: testCa().caFile },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await Promise.all([idp?.close(), tenantOff?.close(), accepting?.close(), helpdeskSmtp?.close()]);
  });

  it('signs an admin in through the identity provider (code + PKCE) and lists every sender', async () => {
    // The identity platform double serves HTTPS with the test CA, which chromium does not know.
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, ignoreHTTPSErrors: true });
    page = await context.newPage();
    const authorize: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/oauth2/v2.0/authorize')) authorize.push(r.url());
    });
    await signIn(page, ADMIN);
    expect(authorize).toHaveLength(1);
    const asked = new URL(authorize[0]!);
    expect(asked.searchParams.get('code_challenge_method')).toBe('S256');
    expect(asked.searchParams.get('redirect_uri')).toBe(`${base}/auth/callback`);
    expect(await page.locator('body').textContent()).toContain(ADMIN);
    await page.getByRole('row', { name: /helpdesk/ }).waitFor();
    await page.getByRole('row', { name: /library/ }).waitFor();
    // helpdesk has no rate: the relay does not count its recipients, and the page does not claim 0.
    expect(await page.getByRole('row', { name: /helpdesk/ }).textContent()).toContain('not counted (no pacing)');
    await shot(page, 'signed-in');
  });

  it('creates a sender from the Microsoft 365 preset, sets its password, tests it until it passes', async () => {
    await page.getByRole('button', { name: 'New sender' }).click();
    await page.getByLabel('Sender id').fill('news');
    await page.getByLabel('Provider').selectOption('microsoft365-smtp');
    // The preset fills the provider's connection; this one is pointed at a local server.
    expect(await page.getByLabel('SMTP host').inputValue()).toBe('smtp.office365.com');
    expect(await page.getByLabel('Port').inputValue()).toBe('587');
    expect(await page.getByLabel('Security').inputValue()).toBe('starttls');
    await page.getByLabel('From address').fill('news@campus.example');
    await page.getByLabel('SMTP host').fill('127.0.0.1');
    await page.getByLabel('Port').fill(String(tenantOff.port));
    await page.getByLabel('Security').selectOption('none');
    await page.getByLabel('Sign-in user (empty: no SMTP AUTH)').fill('news@campus.example');
    await shot(page, 'sender-form');
    await page.getByRole('button', { name: 'Save sender' }).click();
    await page.getByRole('heading', { name: 'Sender news' }).waitFor();
    const facts = page.locator('dl.facts');
    expect(await facts.textContent()).toMatch(
      new RegExp(`SMTP 127\\.0\\.0\\.1:${tenantOff.port}.*password \\(news@campus\\.example\\).*the console and API`, 's'),
    );
    expect(await facts.textContent()).toContain(ADMIN);

    // The password, on the sender's page.
    await page.getByText('not set').waitFor();
    await page.getByLabel('New value').fill(PASSWORD);
    await page.getByRole('button', { name: 'Set or rotate secret' }).click();
    await page.getByRole('status').filter({ hasText: 'saved.' }).waitFor();
    await page.getByText(/: set .* by ada@campus\.example/).waitFor();

    // Test: the tenant has SMTP AUTH off, and the page says how to turn it on.
    await page.getByRole('button', { name: 'Test', exact: true }).click();
    await page.getByText('The test failed.').waitFor({ timeout: 30_000 });
    expect(await page.locator('ol.steps').textContent()).toContain('5.7.139');
    const remedy = page.getByText('What to do:').locator('..');
    expect(await remedy.textContent()).toMatch(/Authenticated SMTP.*Set-CASMailbox/s);
    await shot(page, 'sender-test-failed');

    // Fixed by pointing the sender at a server that accepts its password; the test passes.
    await page.getByRole('button', { name: 'Edit settings' }).click();
    expect(await page.getByLabel('SMTP host').inputValue()).toBe('127.0.0.1');
    await page.getByLabel('Port').fill(String(accepting.port));
    await page.getByRole('button', { name: 'Save sender' }).click();
    await page.getByText(`SMTP 127.0.0.1:${accepting.port}`).waitFor();
    await page.getByLabel('Send a test message to (optional)').fill('check@students.campus.example');
    await page.getByRole('button', { name: 'Test', exact: true }).click();
    await page.getByText('All steps passed.').waitFor({ timeout: 30_000 });
    const [mail] = await accepting.waitForMessages(1);
    expect(mail?.envelope.to).toEqual(['check@students.campus.example']);
    expect(mail?.user).toBe('news@campus.example');
    await shot(page, 'sender');
  }, 60_000);

  it('shows a message reaching SENT, and sends a failed one again from the Messages page', async () => {
    const client = stack.client(app.apiKey);
    const sent = await client.sendMail({ sender: 'helpdesk', to: ['ada@students.campus.example'], subject: 'Timetable', text: 'x' });
    const failed = await client.sendMail({ sender: 'helpdesk', to: ['nobody@students.campus.example'], subject: 'Lost', text: 'x' });
    await page.getByRole('link', { name: 'Senders', exact: true }).click();
    // The preset's daily cap, from the queue figures the page reads alongside.
    await expect
      .poll(() => page.getByRole('row', { name: /news/ }).textContent())
      .toMatch(/SMTP 127\.0\.0\.1.*password \(news@campus\.example\).*microsoft365-smtp0 \/ 10000/);
    await shot(page, 'senders');
    await page.goto(`${base}/#/messages`);
    await page.getByRole('heading', { name: 'Messages' }).waitFor();
    // An admin's search starts with every sender.
    const row = (subject: string) => page.getByRole('row', { name: new RegExp(subject) });
    // The page reads the list again by itself until both have settled.
    await row('Timetable').filter({ hasText: 'sent' }).waitFor({ timeout: 30_000 });
    await row('Lost').filter({ hasText: 'failed' }).waitFor({ timeout: 30_000 });
    expect(await row('Lost').textContent()).toContain('5.1.1');
    await page.getByRole('button', { name: 'Timetable' }).click();
    await page
      .getByRole('list', { name: `History of message ${sent.messageId}` })
      .getByText('sent', { exact: true })
      .waitFor();
    await shot(page, 'messages');

    // The address exists now; the failed message is sent again from the page.
    refuseNobody = false;
    await page.getByRole('checkbox', { name: `Select message ${failed.messageId}` }).check();
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Send again' }).click();
    expect(await page.getByRole('status').textContent()).toBe('Send again: 1 message(s).');
    await row('Lost').filter({ hasText: 'sent' }).waitFor({ timeout: 30_000 });
    expect(helpdeskSmtp.messages.some((m) => m.envelope.to.includes('nobody@students.campus.example'))).toBe(true);
    await shot(page, 'messages-retried');

    // Paging: eleven messages at ten a page are two pages, the second with the one left over.
    await Promise.all(
      Array.from({ length: 9 }, (_, i) => client.sendMail({ sender: 'helpdesk', to: ['ada@students.campus.example'], subject: `Notice ${i + 1}`, text: 'x' })),
    );
    await page.getByLabel('Per page').selectOption('10');
    const rows = page.locator('tbody tr');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(10);
    expect(await page.getByRole('button', { name: 'Previous page' }).isDisabled()).toBe(true);
    const first = await rows.allTextContents();
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.getByText('Page 2').waitFor();
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(1);
    expect(first).not.toContain(await rows.first().textContent());
    expect(await page.getByRole('button', { name: 'Next page' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.getByText('Page 1').waitFor();
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(10);
  }, 60_000);

  it('keeps the Queues page current without a reload, and lists clients', async () => {
    await page.getByRole('link', { name: 'Queues' }).click();
    await page.getByRole('heading', { name: 'Queues' }).waitFor();
    const helpdesk = page.getByRole('row', { name: /^helpdesk/ });
    await helpdesk.waitFor();
    expect(await page.getByRole('rowheader').allTextContents()).toEqual(expect.arrayContaining(['helpdesk', 'library', 'news']));
    const before = await helpdesk.textContent();
    expect(before).toContain('healthy');
    // The figures come over the live stream (not polling).
    await page.getByText('Live: the figures change as mail is sent.').waitFor();
    // A message refused for good turns helpdesk red on the open page, by itself.
    refuseNobody = true;
    await stack.client(app.apiKey).sendMail({ sender: 'helpdesk', to: ['nobody@students.campus.example'], subject: 'Lost again', text: 'x' });
    await expect.poll(() => helpdesk.textContent(), { timeout: 15_000 }).toContain('1 failed in 24 h');
    await shot(page, 'queues');
    await page.getByRole('link', { name: 'Clients and keys' }).click();
    await page.getByRole('heading', { name: 'Clients and keys' }).waitFor();
    expect(await page.getByRole('row', { name: /^app/ }).textContent()).toMatch(/helpdesk.*library/s);
    await shot(page, 'clients');
  });

  it("lets an owner see only their own sender, not another department's", async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 }, ignoreHTTPSErrors: true });
    const owner = await context.newPage();
    await signIn(owner, OWNER);
    await owner.getByRole('row', { name: /library/ }).waitFor();
    expect(await owner.getByRole('row', { name: /helpdesk|news/ }).count()).toBe(0);
    expect(await owner.getByRole('button', { name: 'New sender' }).count()).toBe(0);
    await shot(owner, 'senders-owner');
    // Asking for another department's sender by its address shows the API's refusal, not the sender.
    await owner.goto(`${base}/#/senders/helpdesk`);
    await owner.getByRole('heading', { name: 'Sender helpdesk' }).waitFor();
    await owner.getByRole('alert').waitFor();
    expect(await owner.getByRole('alert').textContent()).toBe('id: sender "helpdesk" is not one of yours');
    expect(await owner.locator('dl.facts').count()).toBe(0);
    await shot(owner, 'sender-owner-refused');
    // Messages: only their sender to search, and none of helpdesk's messages.
    await owner.getByRole('link', { name: 'Messages' }).click();
    await owner.getByRole('heading', { name: 'Messages' }).waitFor();
    expect(await owner.getByLabel('Sender', { exact: true }).locator('option').allTextContents()).toEqual(['library']);
    // Asked for helpdesk's messages with her own session and CSRF token, the API refuses.
    const refused = await owner.evaluate(async () => {
      const { csrf } = (await (await fetch('/api/session')).json()) as { csrf: string };
      const res = await fetch('/api/ListMessages', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify({ sender: 'helpdesk' }),
      });
      return { status: res.status, body: await res.text() };
    });
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('helpdesk');
    await context.close();
  });
});
