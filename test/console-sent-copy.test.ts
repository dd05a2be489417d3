import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { MessageState } from '@relay/proto';
import {
  clientEntry,
  freePort,
  newClient,
  smtpSender,
  startSmtpServer,
  startStack,
  type Stack,
  type TestSmtpServer,
  testCa,
  waitForState,
} from '@relay/testkit';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A message's page in chromium (the demo sign-in) for a sender with copy_to_sent whose IMAP
 * server is down: it shows the message SENT and the copy to Sent waiting, with the error.
 */
const CHROMIUM = process.env.RELAY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console sent-copy tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set RELAY_CHROMIUM)`);

const USER = 'registrar@campus.example';
const PASSWORD = 'registrar-password';
const app = newClient('app', ['registrar']);
const token = randomBytes(32).toString('base64url');
let smtp: TestSmtpServer;
let stack: Stack;
let browser: Browser;
let base: string;
let page: Page;
let imapPort: number;

describe.skipIf(!haveChromium)('message page in chromium: the copy to Sent', () => {
  beforeAll(async () => {
    smtp = await startSmtpServer({ security: 'starttls', users: { [USER]: PASSWORD } });
    // Nothing listens there: every copy fails to connect and is retried.
    imapPort = await freePort();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    stack = await startStack({
      label: 'console-copy',
      config: {
        clients: [clientEntry(app)],
        senders: [
          {
            ...smtpSender({ id: 'registrar', from: USER, server: smtp, auth: { user: USER, password: PASSWORD } }),
            copy_to_sent: true,
            feedback: { imap: { host: '127.0.0.1', port: imapPort, security: 'tls', servername: 'localhost', ca_file: testCa().caFile } },
          },
        ],
        delivery: { retry_initial: '200ms', retry_max: '1s' },
      },
      env: { RELAY_HTTP_PORT: String(port), RELAY_PUBLIC_URL: base, RELAY_CONSOLE_DEMO_TOKEN: token },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    page = await (await browser.newContext()).newPage();
    await page.goto(`${base}/auth/demo?token=${token}`);
    await page.getByRole('heading', { name: 'Senders' }).waitFor();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await smtp?.close();
  });

  it('shows the message SENT and its copy to Sent being retried, with the connection error', async () => {
    const client = stack.client(app.apiKey);
    const res = await client.sendMail({ sender: 'registrar', to: ['ada@students.campus.example'], subject: 'Copy waits', text: 'x' });
    await waitForState(client, res.messageId, [MessageState.SENT], 30_000);

    await page.goto(`${base}/#/messages/${res.messageId}`);
    await page.getByRole('heading', { name: `Message ${res.messageId}` }).waitFor();
    const facts = page.locator('dl.facts');
    // The page reads the message again every few seconds; the first try may still be under way.
    await expect.poll(() => facts.textContent(), { timeout: 30_000 }).toMatch(/Copy to Sent\s*Not copied yet, trying again \(\d+ attempts?\)/);
    expect(await facts.textContent()).toMatch(new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${imapPort}`));
    expect(await facts.textContent()).toMatch(/State\s*sent/i);
  });
});
