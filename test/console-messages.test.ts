import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chromium, type Browser, type Page } from 'playwright-core';
import {
  clientEntry,
  freePort,
  newClient,
  type OtlpReceiver,
  smtpSender,
  startOtlpReceiver,
  startSmtpServer,
  startStack,
  type Stack,
  type TestSmtpServer,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The console's Messages page in a real browser (Debian's chromium, as in console-browser.test.ts):
 * a search by subject and by time, kept in the address so it can be linked, and a message's
 * timeline linking to its trace in the tracing UI that RELAY_TRACE_URL_TEMPLATE names.
 */
const CHROMIUM = process.env.RELAY_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console messages tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set RELAY_CHROMIUM)`);

const TEMPLATE = 'http://jaeger.campus.example:16686/trace/{trace_id}';
const app = newClient('app', ['helpdesk']);
const token = randomBytes(32).toString('base64url');
let smtp: TestSmtpServer;
let otlp: OtlpReceiver;
let stack: Stack;
let browser: Browser;
let base: string;

/** A caller's trace: the message keeps this trace id from SendMail to the provider's answer. */
function callerTrace(sampled = true) {
  const traceId = randomBytes(16).toString('hex');
  return { traceId, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-${sampled ? '01' : '00'}` };
}

describe.skipIf(!haveChromium)('Messages page in chromium', () => {
  beforeAll(async () => {
    // No such student: a permanent failure with a remedy the relay knows.
    smtp = await startSmtpServer({
      reply: (ctx) => (ctx.phase === 'rcpt' && ctx.rcpt.startsWith('nobody@') ? { code: 550, message: '5.1.1 User unknown' } : undefined),
    });
    otlp = await startOtlpReceiver();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    stack = await startStack({
      label: 'console-msgs',
      config: { clients: [clientEntry(app)], senders: [smtpSender({ id: 'helpdesk', server: { port: smtp.port }, security: 'none' })] },
      env: {
        RELAY_HTTP_PORT: String(port),
        RELAY_PUBLIC_URL: base,
        RELAY_CONSOLE_DEMO_TOKEN: token,
        RELAY_TRACE_URL_TEMPLATE: TEMPLATE,
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_METRICS_EXPORTER: 'none',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_BSP_SCHEDULE_DELAY: '50',
      },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await Promise.all([smtp?.close(), otlp?.close()]);
  });

  let page: Page;

  it('searches by subject, keeps the search in the address, and links a message to its trace', async () => {
    const client = stack.client(app.apiKey);
    const loan = callerTrace();
    const sent = await client.sendMail(
      { sender: 'helpdesk', to: ['ada@students.campus.example'], subject: 'Library loan overdue', text: 'x' },
      { traceparent: loan.traceparent },
    );
    // A trace the caller did not sample is recorded nowhere: the message names none.
    const exam = await client.sendMail(
      { sender: 'helpdesk', to: ['bob@students.campus.example'], subject: 'Exam results', text: 'x' },
      { traceparent: callerTrace(false).traceparent },
    );
    await smtp.waitForMessages(2);
    expect((await client.getMessage(sent.messageId)).traceId).toBe(loan.traceId);
    expect((await client.getMessage(exam.messageId)).traceId).toBe('');

    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    page = await context.newPage();
    await page.goto(`${base}/auth/demo?token=${token}`);
    await page.getByRole('heading', { name: 'Senders' }).waitFor();
    await page.goto(`${base}/#/messages`);
    await page.getByRole('button', { name: 'Exam results' }).waitFor({ timeout: 20_000 });
    await page.getByRole('button', { name: 'Library loan overdue' }).waitFor();

    // Any case, a part of the subject: only the loan reminder is left.
    await page.getByLabel('Subject').fill('LIBRARY loan');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('button', { name: 'Exam results' }).waitFor({ state: 'detached' });
    const rows = page.locator('tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().textContent()).toContain('Library loan overdue');
    expect(new URL(page.url()).hash).toBe('#/messages?subject=LIBRARY+loan');

    // The timeline, with a link to the message's trace in the tracing UI.
    await page.getByRole('button', { name: 'Library loan overdue' }).click();
    await page
      .getByRole('list', { name: `History of message ${sent.messageId}` })
      .getByText('sent', { exact: true })
      .waitFor({ timeout: 20_000 });
    const link = page.getByRole('link', { name: /View trace/ });
    expect(await link.getAttribute('href')).toBe(`http://jaeger.campus.example:16686/trace/${loan.traceId}`);
    expect(await link.getAttribute('target')).toBe('_blank');
    expect((await link.getAttribute('rel'))?.split(' ')).toContain('noopener');
    // The link leads to a trace that exists: ingest's spans of the message went out under that id.
    await otlp.waitForTrace(loan.traceId, (spans) => spans.some((s) => s.service === 'relay-ingest'));
  });

  it("shows a failure's reply and its remedy apart", async () => {
    const failed = await stack
      .client(app.apiKey)
      .sendMail({ sender: 'helpdesk', to: ['nobody@students.campus.example'], subject: 'Unknown student', text: 'x' });
    await page.getByLabel('Subject').fill('unknown');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByRole('button', { name: 'Unknown student' }).click({ timeout: 20_000 });
    const history = page.getByRole('list', { name: `History of message ${failed.messageId}` });
    await history.getByText('failed', { exact: true }).waitFor({ timeout: 20_000 });
    const step = history.locator('li').last();
    expect(await step.locator('.detail').textContent()).toMatch(/^550 5\.1\.1 User unknown/);
    expect(await step.locator('.detail').textContent()).not.toContain('Check the address');
    expect(await step.locator('.remedy').textContent()).toBe(
      'What to do: The recipient address does not exist or is not accepted by the receiving domain. Check the address.',
    );
  });

  it('opens a linked search as it was, and searches by time', async () => {
    const linked = await page.context().newPage();
    await linked.goto(`${base}/#/messages?subject=exam`);
    await linked.getByRole('button', { name: 'Exam results' }).waitFor({ timeout: 20_000 });
    expect(await linked.getByLabel('Subject').inputValue()).toBe('exam');
    expect(await linked.locator('tbody tr').count()).toBe(1);
    // Its message has no trace: its timeline has no link.
    await linked.getByRole('button', { name: 'Exam results' }).click();
    await linked
      .getByRole('list', { name: /^History of message/ })
      .getByText('sent', { exact: true })
      .waitFor({ timeout: 20_000 });
    expect(await linked.getByRole('link', { name: /View trace/ }).count()).toBe(0);

    // From an hour ahead: nothing has changed since; from an hour ago to an hour ahead: all.
    const local = (ms: number) => {
      const d = new Date(Date.now() + ms);
      return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    };
    await linked.getByLabel('Subject').fill('');
    await linked.getByLabel('From', { exact: true }).fill(local(3_600_000));
    await linked.getByRole('button', { name: 'Search', exact: true }).click();
    await linked.getByText('No messages match this search.').waitFor();
    expect(new URL(linked.url()).hash).toMatch(/^#\/messages\?from=\d{4}-\d\d-\d\dT\d\d%3A\d\d%3A00\.000Z$/);

    await linked.getByLabel('From', { exact: true }).fill(local(-3_600_000));
    await linked.getByLabel('To', { exact: true }).fill(local(3_600_000));
    await linked.getByRole('button', { name: 'Search', exact: true }).click();
    await linked.getByRole('button', { name: 'Library loan overdue' }).waitFor();
    await linked.getByRole('button', { name: 'Exam results' }).waitFor();

    // To before From is refused on the page, naming the field.
    await linked.getByLabel('To', { exact: true }).fill(local(-7_200_000));
    await linked.getByRole('button', { name: 'Search', exact: true }).click();
    expect(await linked.getByRole('alert').textContent()).toBe('To: must be later than From');
  });
});
