import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chromium, type Browser, type Page } from 'playwright-core';
import { clientEntry, freePort, newClient, smtpSender, startSmtpServer, startStack, type Stack, type TestSmtpServer } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The console in a real browser: Debian's chromium (never a downloaded one) driven by
 * playwright-core, against a stack whose ingest serves the built console. CI installs chromium
 * (.ci/run); without it here the suite is skipped, saying so.
 */
const CHROMIUM = process.env.RELAY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console browser tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set RELAY_CHROMIUM)`);

const app = newClient('app', ['helpdesk']);
const token = randomBytes(32).toString('base64url');
let smtp: TestSmtpServer;
let stack: Stack;
let browser: Browser;
let base: string;

describe.skipIf(!haveChromium)('web console in chromium', () => {
  beforeAll(async () => {
    smtp = await startSmtpServer();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    stack = await startStack({
      label: 'console',
      config: { clients: [clientEntry(app)], senders: [smtpSender({ id: 'helpdesk', server: { port: smtp.port }, security: 'none' })] },
      env: { RELAY_HTTP_PORT: String(port), RELAY_PUBLIC_URL: base, RELAY_CONSOLE_DEMO_TOKEN: token },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await smtp?.close();
  });

  let page: Page;

  it('signs in with the one-time link, lists senders, tests one step by step, at phone width', async () => {
    const context = await browser.newContext({ viewport: { width: 375, height: 800 } });
    page = await context.newPage();
    const failed: string[] = [];
    page.on('requestfailed', (r) => failed.push(r.url()));
    await page.goto(`${base}/auth/demo?token=${token}`);
    // The sign-in page hops to the console; the session cookie rides along.
    await page.getByRole('heading', { name: 'Senders' }).waitFor();
    const row = page.getByRole('row', { name: /helpdesk/ });
    expect(await row.textContent()).toMatch(/SMTP 127\.0\.0\.1/);
    // Everything the page loaded came from the relay itself, and nothing is wider than the phone.
    expect(failed).toEqual([]);
    expect(await page.evaluate('document.body.scrollWidth')).toBeLessThanOrEqual(376);

    await page.getByRole('link', { name: 'helpdesk' }).click();
    await page.getByRole('heading', { name: 'Sender helpdesk' }).waitFor();
    await page.getByLabel('Send a test message to (optional)').fill('check@students.campus.example');
    await page.getByRole('button', { name: 'Test', exact: true }).click();
    await page.getByText('All steps passed.').waitFor({ timeout: 60_000 });
    expect(await page.locator('ol.steps li').count()).toBeGreaterThan(1);
    await smtp.waitForMessages(1);

    // The link was single-use.
    const other = await (await browser.newContext()).newPage();
    expect((await other.goto(`${base}/auth/demo?token=${token}`))?.status()).toBe(403);
  });

  it("creates a sender, checked as one types with the API's message next to the field", async () => {
    await page.setViewportSize({ width: 1200, height: 800 });
    await page.goto(`${base}/#/senders`);
    await page.getByRole('button', { name: 'New sender' }).click();
    const id = page.getByLabel('Sender id');
    await id.fill('bad id');
    // PutSender with validate_only answers as saving would; the message sits by the field it names.
    const idError = page.locator('#f-id-error');
    await idError.waitFor();
    expect(await idError.textContent()).toMatch(/^must be 1-64 letters, digits/);
    expect(await id.getAttribute('aria-invalid')).toBe('true');
    expect(await id.getAttribute('aria-describedby')).toBe('f-id-hint f-id-error');
    // From is still empty, but untouched: no message for it yet.
    expect(await page.locator('#f-from-error').count()).toBe(0);
    // An id that is taken is the id field's message too.
    await id.fill('helpdesk');
    await page.getByText('a sender with this id is defined in relay.yaml').waitFor();
    await id.fill('news');
    await idError.waitFor({ state: 'detached' });
    expect(await id.getAttribute('aria-invalid')).toBeNull();
    await page.getByLabel('Provider').selectOption('google-workspace');
    await page.getByLabel('From address').fill('news@campus.example');
    const port = page.getByLabel('Port');
    await port.fill('5x');
    await page.locator('#f-port-error').waitFor();
    expect(await port.getAttribute('aria-describedby')).toBe('f-port-error');
    // Save stays available, and says what stopped it.
    const save = page.getByRole('button', { name: 'Save sender' });
    expect(await save.isEnabled()).toBe(true);
    await save.click();
    expect(await page.getByRole('alert').textContent()).toMatch(/^smtp\.port: /);
    await port.fill('587');
    await page.locator('#f-port-error').waitFor({ state: 'detached' });
    // The checks stored nothing: saving creates it now.
    await page.getByRole('button', { name: 'Save sender' }).click();
    await page.getByRole('heading', { name: 'Sender news' }).waitFor();
    expect(await page.locator('dl.facts').textContent()).toMatch(/SMTP smtp\.gmail\.com:587.*demo@localhost \(console\)/s);
  });

  it('lists messages with their timeline, live queues, and clients', async () => {
    const client = stack.client(app.apiKey);
    const sent = await client.sendMail({ sender: 'helpdesk', to: ['ada@students.campus.example'], subject: 'Console check', text: 'x' });
    await smtp.waitForMessages(2);
    await page.goto(`${base}/#/messages`);
    await page.getByRole('heading', { name: 'Messages' }).waitFor();
    await page.getByRole('button', { name: 'Console check' }).click({ timeout: 20_000 });
    await page
      .getByRole('list', { name: `History of message ${sent.messageId}` })
      .getByText('sent', { exact: true })
      .waitFor();
    // Send again asks first; declined, nothing is called; accepted, the API's count is shown.
    await page.getByRole('checkbox', { name: `Select message ${sent.messageId}` }).check();
    const asked: string[] = [];
    page.once('dialog', (d) => {
      asked.push(d.message());
      void d.dismiss();
    });
    await page.getByRole('button', { name: 'Send again' }).click();
    expect(asked).toEqual(['Send again 1 message?']);
    expect(await page.getByRole('status').count()).toBe(0);
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Send again' }).click();
    // A SENT message is not sent again: the relay says how many it took (none).
    expect(await page.getByRole('status').textContent()).toBe('Send again: 0 message(s).');
    await page.goto(`${base}/#/queues`);
    await page.getByRole('rowheader', { name: 'helpdesk' }).waitFor();
    await page.goto(`${base}/#/clients`);
    await page.getByRole('rowheader', { name: /^app/ }).waitFor();
  });

  it('signs out everywhere: the cookie, copied before, is refused afterwards', async () => {
    const [cookie] = await page.context().cookies(base);
    expect(cookie?.name).toBe('relay_session');
    const copy = { cookie: `${cookie!.name}=${cookie!.value}` };
    const signedIn = async () => ((await (await fetch(`${base}/api/session`, { headers: copy })).json()) as { signedIn: boolean }).signedIn;
    expect(await signedIn()).toBe(true);
    await page.getByRole('button', { name: 'Sign out everywhere' }).click();
    await page.getByRole('heading', { name: 'Campus Relay console' }).waitFor();
    expect(await signedIn()).toBe(false);
  });
});
