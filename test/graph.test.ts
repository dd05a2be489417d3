import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { MessageState, type TestSenderResponse } from '@relay/proto';
import {
  clientEntry,
  FAST_DELIVERY,
  type GraphFake,
  historyStates,
  type IdentityFake,
  newClient,
  type ServiceProcess,
  spawnService,
  type Stack,
  startGraphFake,
  startIdentityFake,
  startStack,
  type StopResult,
  testCa,
  type TestClient,
  uncleanExits,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLIENT_ID = 'graph-app';
const LIMITED_ID = 'graph-app-without-mail-send';
const SECRET = 'graph-client-secret-8Q~value';
const REGISTRAR = 'registrar@campus.example';
const BUSY = 'admissions@campus.example';

let idp: IdentityFake;
let graph: GraphFake;
let stack: Stack;
let client: TestClient;
let secondReplica: ServiceProcess;

const SENDERS = ['registrar', 'busy', 'send-as', 'limited', 'policy', 'onprem', 'bad-recipients', 'too-large'];
const app = newClient('student-system', SENDERS);
const ops = newClient('it-ops', [], true);

function graphSender(id: string, mailbox: string, o: { from?: string; clientId?: string; extra?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    id,
    from: o.from ?? mailbox,
    reply_to: 'help@campus.example',
    transport: 'graph',
    graph: {
      tenant_id: `tenant-${id}`,
      client_id: o.clientId ?? CLIENT_ID,
      client_secret: 'env:GRAPH_SECRET',
      mailbox,
      authority_url: idp.url,
      graph_url: graph.url,
      ...o.extra,
    },
  };
}

beforeAll(async () => {
  idp = await startIdentityFake({
    clients: { [CLIENT_ID]: SECRET, [LIMITED_ID]: SECRET },
    appRoles: { [CLIENT_ID]: ['Mail.Send', 'Mail.ReadWrite'], [LIMITED_ID]: ['User.Read.All'] },
  });
  graph = await startGraphFake({
    identity: idp,
    // Every answer takes a moment, so that requests of concurrent messages overlap.
    delayMs: 40,
    mailboxes: {
      [REGISTRAR]: {},
      [BUSY]: {},
      'office@campus.example': { sendAs: ['dean@campus.example'] },
      'policy@campus.example': { failure: 'ApplicationAccessPolicy' },
      'onprem@campus.example': { failure: 'MailboxNotEnabledForRESTAPI' },
      'norecipients@campus.example': { failure: 'ErrorInvalidRecipients' },
      'small@campus.example': { failure: 'ErrorMessageSizeExceeded' },
    },
  });
  stack = await startStack({
    label: 'graph',
    env: { NODE_EXTRA_CA_CERTS: testCa().caFile, GRAPH_SECRET: SECRET, LOG_LEVEL: 'debug' },
    config: {
      clients: [clientEntry(app), clientEntry(ops)],
      senders: [
        graphSender('registrar', REGISTRAR, { extra: { save_to_sent_items: false } }),
        graphSender('busy', BUSY),
        graphSender('send-as', 'office@campus.example', { from: 'Registrar <registrar@campus.example>' }),
        graphSender('limited', REGISTRAR, { clientId: LIMITED_ID }),
        graphSender('policy', 'policy@campus.example'),
        graphSender('onprem', 'onprem@campus.example'),
        graphSender('bad-recipients', 'norecipients@campus.example'),
        graphSender('too-large', 'small@campus.example'),
      ],
      // A 5 MB and a 30 MB file travel in one message: over the relay-wide 35 MB default, within
      // the 150 MB of the graph senders' preset.
      delivery: FAST_DELIVERY,
    },
  });
  // A second graph-sender replica on the same durable consumer.
  secondReplica = await spawnService('graph-sender', { env: stack.env });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  const results: StopResult[] = [];
  if (secondReplica)
    results.push({ name: 'graph-sender#2', pid: secondReplica.pid, status: await secondReplica.stop('SIGTERM', 20_000), logs: secondReplica.logs });
  if (stack) {
    const redis = new Redis(stack.env.REDIS_URL!);
    const keys = await redis.keys(`${stack.prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  }
  results.push(...((await stack?.stop()) ?? []));
  await Promise.all([graph?.close(), idp?.close()]);
  expect(uncleanExits(results)).toEqual([]);
});

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const sentWithId = (id: string) => graph.sent.filter((m) => m.message.internetMessageHeaders?.some((h) => h.name === 'X-Relay-Message-Id' && h.value === id));

/** Bytes that differ along the file, so a misplaced chunk changes the hash. */
function file(bytes: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 997) b[i] = (i / 997) & 0xff;
  return b;
}

const stepsOf = (r: TestSenderResponse) => r.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`);

describe('Microsoft Graph delivery end to end', () => {
  it('sends a small message through sendMail as JSON, with the request-id in its history', async () => {
    const res = await client.sendMail({
      sender: 'registrar',
      to: ['Ada Lovelace <ada@students.campus.example>'],
      cc: ['advisor@campus.example'],
      bcc: ['archive@campus.example'],
      subject: 'Enrolment confirmed',
      text: 'You are enrolled.',
      html: '<p>You are <b>enrolled</b>.</p>',
      headers: { 'X-Campus-Ticket': 'T-1' },
      attachments: [{ filename: 'receipt.pdf', contentType: 'application/pdf', content: file(200_000) }],
    });
    const done = await waitForState(client, res.messageId, [MessageState.SENT]);
    const [sent] = sentWithId(res.messageId);
    expect(sent).toMatchObject({ via: 'sendMail', mailbox: REGISTRAR, saveToSentItems: false });
    expect(sent!.message).toMatchObject({
      subject: 'Enrolment confirmed',
      from: { emailAddress: { address: REGISTRAR } },
      toRecipients: [{ emailAddress: { address: 'ada@students.campus.example', name: 'Ada Lovelace' } }],
      ccRecipients: [{ emailAddress: { address: 'advisor@campus.example' } }],
      bccRecipients: [{ emailAddress: { address: 'archive@campus.example' } }],
      replyTo: [{ emailAddress: { address: 'help@campus.example' } }],
      body: { contentType: 'HTML', content: '<p>You are <b>enrolled</b>.</p>' },
    });
    expect(sent!.message.internetMessageHeaders).toContainEqual({ name: 'X-Campus-Ticket', value: 'T-1' });
    expect(sent!.attachments).toMatchObject([{ name: 'receipt.pdf', via: 'inline', sha256: sha256(file(200_000)) }]);
    expect(historyStates(done)).toEqual(['QUEUED', 'SENDING', 'SENT']);
    expect(done.history.at(-1)!.detail).toBe(
      `202 Accepted by Microsoft Graph sendMail for ${REGISTRAR} with 1 attachment(s) inline (request-id ${sent!.requestId})`,
    );
    const tokenRequest = idp.tokenRequests.find((r) => r.tenant === 'tenant-registrar')!;
    expect(tokenRequest).toMatchObject({ grantType: 'client_credentials', scope: expect.stringContaining('https://graph.microsoft.com/.default') });
  });

  it('sends 5 MB and 30 MB attachments by upload session in chunks of at most 4 MB, then the draft', async () => {
    const five = file(5 * 1024 * 1024);
    const thirty = file(30 * 1024 * 1024);
    const res = await client.sendMail(
      {
        sender: 'registrar',
        to: ['bob@students.campus.example'],
        subject: 'Your records',
        text: 'Attached.',
        attachments: [
          { filename: 'transcript.pdf', contentType: 'application/pdf', content: five },
          { filename: 'portfolio.zip', contentType: 'application/zip', content: thirty },
        ],
      },
      { deadlineMs: 60_000 },
    );
    const done = await waitForState(client, res.messageId, [MessageState.SENT], 40_000);
    const [sent] = sentWithId(res.messageId);
    expect(sent!.via).toBe('draft');
    const byName = new Map(sent!.attachments.map((a) => [a.name, a]));
    expect(byName.get('transcript.pdf')).toMatchObject({ via: 'upload-session', size: five.length, sha256: sha256(five) });
    expect(byName.get('portfolio.zip')).toMatchObject({ via: 'upload-session', size: thirty.length, sha256: sha256(thirty) });
    for (const a of byName.values()) {
      expect(Math.max(...a.chunks)).toBeLessThanOrEqual(4 * 1024 * 1024);
      expect(a.chunks.slice(0, -1).every((n) => n % (320 * 1024) === 0)).toBe(true);
    }
    expect(byName.get('portfolio.zip')!.chunks).toHaveLength(8);
    expect(done.history.at(-1)!.detail).toMatch(/draft sent with 2 attachment\(s\), 2 by upload session \(request-id [0-9a-f-]{36}\)$/);
    expect(graph.openDrafts()).toBe(0);
  });

  it('waits as long as Retry-After says when Graph answers 429, then sends', async () => {
    graph.throttle(REGISTRAR, { times: 1, retryAfterSeconds: 1 });
    const res = await client.sendMail({ sender: 'registrar', to: ['carol@students.campus.example'], subject: 'throttled', text: 'x' });
    await waitForState(client, res.messageId, [MessageState.SENT]);
    const [sent] = sentWithId(res.messageId);
    const throttled = graph.requests.find((r) => r.mailbox === REGISTRAR && r.status === 429)!;
    const accepted = graph.requests.find((r) => r.requestId === sent!.requestId)!;
    expect(accepted.at - throttled.at).toBeGreaterThanOrEqual(1000);
  });

  it('keeps at most 4 requests per mailbox in flight across two graph-sender replicas', async () => {
    const ids = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        client.sendMail({ sender: 'busy', to: [`s${i}@students.campus.example`], subject: `busy ${i}`, text: 'x' }).then((r) => r.messageId),
      ),
    );
    await Promise.all(ids.map((id) => waitForState(client, id, [MessageState.SENT], 30_000)));
    expect(ids.every((id) => sentWithId(id).length === 1)).toBe(true);
    expect(graph.peakInFlight(BUSY)).toBeLessThanOrEqual(4);
    // Positive controls: requests did overlap, and both replicas sent some of this mail.
    expect(graph.peakInFlight(BUSY)).toBeGreaterThanOrEqual(2);
    const sentBy = (p: ServiceProcess) => ids.filter((id) => p.logs.some((l) => l.includes(id) && l.includes('"sent"')));
    expect(sentBy(stack.graphSender).length).toBeGreaterThan(0);
    expect(sentBy(secondReplica).length).toBeGreaterThan(0);
  });

  it('replaces an expired token once on 401 and sends', async () => {
    const before = idp.tokenRequests.filter((r) => r.tenant === 'tenant-registrar').length;
    const unauthorized = graph.requests.filter((r) => r.status === 401).length;
    idp.revokeAccessTokens();
    const res = await client.sendMail({ sender: 'registrar', to: ['dave@students.campus.example'], subject: 'after expiry', text: 'x' });
    await waitForState(client, res.messageId, [MessageState.SENT]);
    expect(idp.tokenRequests.filter((r) => r.tenant === 'tenant-registrar').length - before).toBe(1);
    expect(graph.requests.filter((r) => r.status === 401).length - unauthorized).toBe(1);
  });

  it.each([
    ['send-as', 'ErrorSendAsDenied', /"Send As"/],
    ['limited', 'ErrorAccessDenied', /application\* permission Mail\.Send/],
    ['policy', 'ErrorAccessDenied', /application access policy keeps this app away/],
    ['onprem', 'MailboxNotEnabledForRESTAPI', /no Exchange Online mailbox/],
    ['bad-recipients', 'ErrorInvalidRecipients', /Check the to, cc and bcc addresses/],
    ['too-large', 'ErrorMessageSizeExceeded', /MaxSendSize/],
  ])('fails %s at once with %s and a remedy', async (sender, code, remedy) => {
    const res = await client.sendMail({ sender, to: ['eve@students.campus.example'], subject: `fails: ${sender}`, text: 'x' });
    const failed = await waitForState(client, res.messageId, [MessageState.FAILED]);
    expect(failed.attempts).toBe(1);
    expect(historyStates(failed)).toEqual(['QUEUED', 'SENDING', 'FAILED']);
    expect(failed.lastError).toMatch(new RegExp(`^${code}: .* \\(HTTP \\d{3}, request-id [0-9a-f-]{36}\\) — `));
    expect(failed.lastError).toMatch(remedy);
    expect(sentWithId(res.messageId)).toEqual([]);
  });

  it('tests a graph sender (AdminService.TestSender): token, permission, mailbox, drafts, a test message, and remedies', async () => {
    const good = await client.testSender({ sender: 'registrar', to: 'it-ops@campus.example' }, { apiKey: ops.apiKey });
    expect(stepsOf(good)).toEqual(['token:ok', 'permission:ok', 'mailbox:ok', 'drafts:ok', 'send:ok']);
    expect(good.ok).toBe(true);
    expect(good.steps[1]!.detail).toMatch(/Mail\.Send present; Mail\.ReadWrite present/);
    expect(good.steps[4]!.detail).toMatch(/^202 .*request-id [0-9a-f-]{36}/);
    expect(graph.sent.some((m) => m.message.toRecipients?.[0]?.emailAddress.address === 'it-ops@campus.example')).toBe(true);

    const withoutTo = await client.testSender({ sender: 'registrar' }, { apiKey: ops.apiKey });
    expect(stepsOf(withoutTo)).toEqual(['token:ok', 'permission:ok', 'mailbox:ok', 'drafts:ok']);

    const limited = await client.testSender({ sender: 'limited' }, { apiKey: ops.apiKey });
    expect(stepsOf(limited)).toEqual(['token:ok', 'permission:failed']);
    expect(limited.remedy).toMatch(/Grant admin consent/);

    const sendAs = await client.testSender({ sender: 'send-as', to: 'it-ops@campus.example' }, { apiKey: ops.apiKey });
    expect(stepsOf(sendAs)).toEqual(['token:ok', 'permission:ok', 'mailbox:ok', 'drafts:ok', 'send:failed']);
    expect(sendAs.steps[4]!.detail).toMatch(/^ErrorSendAsDenied: /);
    expect(sendAs.remedy).toMatch(/"Send As"/);

    const policy = await client.testSender({ sender: 'policy' }, { apiKey: ops.apiKey });
    expect(stepsOf(policy)).toEqual(['token:ok', 'permission:ok', 'mailbox:failed']);
    expect(policy.remedy).toMatch(/application access policy keeps this app away/);
  });
});
