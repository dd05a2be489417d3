import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { AxeResults } from 'axe-core';
import { chromium, type Browser, type Page } from 'playwright-core';
import { clientEntry, freePort, newClient, smtpSender, startSmtpServer, startStack, type Stack, type TestSmtpServer } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * An accessibility audit of every console page with axe-core, in Debian's chromium (as
 * console-browser.test.ts), at desktop and phone width: any violation of impact serious or
 * critical fails the test, each listed with the elements it was found on.
 */
const CHROMIUM = process.env.RELAY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console accessibility tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set RELAY_CHROMIUM)`);
/** axe-core's script, injected into each page. */
const AXE = createRequire(import.meta.url).resolve('axe-core');
/** Desktop and phone width; each in the light and the dark colour scheme (the console follows the system's). */
const VIEWS = [
  { name: 'desktop', width: 1280, height: 800, colorScheme: 'light' },
  { name: 'phone', width: 375, height: 800, colorScheme: 'light' },
  { name: 'desktop, dark', width: 1280, height: 800, colorScheme: 'dark' },
  { name: 'phone, dark', width: 375, height: 800, colorScheme: 'dark' },
] as const;
/** Tab presses per page when checking that keyboard focus is visible. */
const TABS = 25;

const app = newClient('app', ['helpdesk']);
const token = randomBytes(32).toString('base64url');
let smtp: TestSmtpServer;
let stack: Stack;
let browser: Browser;
let base: string;
let page: Page;
let messageId: string;

/** The pages, each opened and waited for until its content is there. */
const PAGES: Array<{ name: string; open: (p: Page) => Promise<void> }> = [
  {
    name: 'Senders',
    open: async (p) => {
      await p.goto(`${base}/#/senders`);
      await p.getByRole('row', { name: /helpdesk/ }).waitFor();
    },
  },
  {
    name: 'New sender form',
    open: async (p) => {
      await p.goto(`${base}/#/senders`);
      await p.getByRole('button', { name: 'New sender' }).click();
      // With a field's message showing, as when one types.
      await p.getByLabel('Sender id').fill('bad id');
      await p.locator('#f-id-error').waitFor();
    },
  },
  {
    name: 'Sender',
    open: async (p) => {
      await p.goto(`${base}/#/senders/helpdesk`);
      await p.getByRole('heading', { name: 'Sender helpdesk' }).waitFor();
      await p.locator('dl.facts').waitFor();
    },
  },
  {
    name: 'Messages, a timeline open',
    open: async (p) => {
      await p.goto(`${base}/#/messages`);
      await p.getByRole('button', { name: 'Accessibility check' }).click({ timeout: 20_000 });
      await p.getByRole('list', { name: `History of message ${messageId}` }).waitFor();
    },
  },
  {
    name: 'Queues',
    open: async (p) => {
      await p.goto(`${base}/#/queues`);
      await p.getByRole('rowheader', { name: 'helpdesk' }).waitFor();
    },
  },
  {
    name: 'Clients and keys',
    open: async (p) => {
      await p.goto(`${base}/#/clients`);
      await p.getByRole('rowheader', { name: /^app/ }).waitFor();
    },
  },
];

/** axe's serious and critical findings on the page as it is, one line each. */
async function audit(p: Page, where: string): Promise<string[]> {
  await p.addScriptTag({ path: AXE });
  const results = (await p.evaluate("axe.run(document, { resultTypes: ['violations'] })")) as AxeResults;
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map(
      (v) =>
        `${where}: ${v.id} (${v.impact}) ${v.help}: ${v.nodes.map((n) => `${n.target.join(' ')}${n.failureSummary ? ` [${n.failureSummary.replace(/\s+/g, ' ')}]` : ''}`).join('; ')}`,
    );
}

describe.skipIf(!haveChromium)('console accessibility (axe-core)', () => {
  beforeAll(async () => {
    smtp = await startSmtpServer();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    stack = await startStack({
      label: 'console-a11y',
      config: { clients: [clientEntry(app)], senders: [smtpSender({ id: 'helpdesk', server: { port: smtp.port }, security: 'none' })] },
      env: { RELAY_HTTP_PORT: String(port), RELAY_PUBLIC_URL: base, RELAY_CONSOLE_DEMO_TOKEN: token },
    });
    const sent = await stack
      .client(app.apiKey)
      .sendMail({ sender: 'helpdesk', to: ['ada@students.campus.example'], subject: 'Accessibility check', text: 'x' });
    messageId = sent.messageId;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    // The console's Content-Security-Policy allows only its own scripts; axe is injected by the test.
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    await page.goto(`${base}/auth/demo?token=${token}`);
    await page.getByRole('heading', { name: 'Senders' }).waitFor();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await smtp?.close();
  });

  it.each(VIEWS)(
    'has no serious or critical violation on any page at $name',
    async (view) => {
      await page.setViewportSize({ width: view.width, height: view.height });
      await page.emulateMedia({ colorScheme: view.colorScheme });
      const found: string[] = [];
      for (const { name, open } of PAGES) {
        await open(page);
        found.push(...(await audit(page, `${name} (${view.name})`)));
      }
      expect(found).toEqual([]);
    },
    120_000,
  );

  it('has no serious or critical violation on the sign-in page', async () => {
    const found: string[] = [];
    for (const view of VIEWS) {
      const context = await browser.newContext({ bypassCSP: true, viewport: { width: view.width, height: view.height }, colorScheme: view.colorScheme });
      const signIn = await context.newPage();
      await signIn.goto(base);
      await signIn.getByRole('heading', { name: 'Campus Relay console' }).waitFor();
      found.push(...(await audit(signIn, `Sign-in (${view.name})`)));
      await context.close();
    }
    expect(found).toEqual([]);
  });

  it('shows where keyboard focus is on every page: an outline of at least 2px on each element Tab reaches', async () => {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.emulateMedia({ colorScheme: 'light' });
    const unseen: string[] = [];
    for (const { name, open } of PAGES) {
      await open(page);
      // From the top of the page: the skip link first.
      await page.evaluate('document.activeElement?.blur(); window.scrollTo(0, 0)');
      let reached = 0;
      for (let i = 0; i < TABS; i++) {
        await page.keyboard.press('Tab');
        const focus = (await page.evaluate(`(() => {
          const el = document.activeElement;
          if (!el || el === document.body) return undefined;
          const s = getComputedStyle(el);
          const label = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' + (el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 40) + '"';
          return { label, outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 };
        })()`)) as { label: string; outline: boolean } | undefined;
        // Past the last control focus leaves the page for a moment, then Tab starts over.
        if (!focus) continue;
        reached++;
        if (!focus.outline) unseen.push(`${name}: ${focus.label}`);
      }
      expect(reached, `${name}: Tab reaches the page's controls`).toBeGreaterThan(2);
    }
    expect([...new Set(unseen)]).toEqual([]);
  }, 120_000);

  it('has a skip link that moves the focus to the content and stays on the page', async () => {
    await page.goto(`${base}/#/messages`);
    // A fresh load: Tab starts at the top.
    await page.reload();
    await page.getByRole('heading', { name: 'Messages' }).waitFor();
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement.textContent')).toBe('Skip to content');
    await page.keyboard.press('Enter');
    expect(await page.evaluate('document.activeElement.id')).toBe('main');
    expect(new URL(page.url()).hash).toBe('#/messages');
    await page.keyboard.press('Tab');
    // The next stop is inside the page's content, past the navigation.
    expect(await page.evaluate("document.getElementById('main').contains(document.activeElement)")).toBe(true);
  });
});
