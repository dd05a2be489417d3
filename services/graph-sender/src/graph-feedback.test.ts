import { readFileSync } from 'node:fs';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { connectBus, type Bus } from '@relay/bus';
import { parseConfig } from '@relay/config';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { DeliveryOutcome, GetGraphTokenResponseSchema, MessageState } from '@relay/proto';
import {
  dropBus,
  eventually,
  startGraphFake,
  startIdentityFake,
  testCa,
  testNatsUrl,
  testRedisUrl,
  uniquePrefix,
  type GraphFake,
  type IdentityFake,
} from '@relay/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGraphClient, type GraphClient } from './graph-client.js';
import { readGraphReportsOnce, startGraphFeedbackReaders, type GraphReportSource } from './graph-feedback.js';
import { createGraphTokens, type GraphTokens } from './graph-token.js';
import { createMailboxSlots } from './mailbox-slots.js';

const CLIENT = 'graph-app';
const SEND_ONLY = 'send-only-app';
const SECRET = 'graph-secret';
const MAILBOX = 'registrar@contoso.edu';
const fixture = (name: string) => readFileSync(new URL(`../../../libs/mail/test-fixtures/ndr/${name}.eml`, import.meta.url));
const EXCHANGE_ID = '0193a5b2-cccc-7d10-8a2b-3c4d5e6f7a84';
const log = { info() {}, warn() {} };
const SEND = 'https://graph.microsoft.com/Mail.Send';
const READ_WRITE = 'https://graph.microsoft.com/Mail.ReadWrite';
const READ = 'https://graph.microsoft.com/Mail.Read';

describe('delivery reports read from a mailbox over Graph (Graph fake, real NATS)', () => {
  const prefix = uniquePrefix('graphfb');
  let idp: IdentityFake;
  let graph: GraphFake;
  let redis: Redis;
  let bus: Bus;
  let client: GraphClient;
  let source: GraphReportSource;

  function tokens(app: (sender: string) => string): Pick<GraphTokens, 'get'> {
    return {
      async get(sender) {
        const res = await fetch(`${idp.url}/tenant/oauth2/v2.0/token`, {
          method: 'POST',
          body: new URLSearchParams({
            grant_type: 'client_credentials',
            client_id: app(sender),
            client_secret: SECRET,
            scope: 'https://graph.microsoft.com/.default',
          }),
        });
        return ((await res.json()) as { access_token: string }).access_token;
      },
    };
  }

  /** The mailbox's own (delegated) token, from a sign-in that granted `scopes`. */
  async function delegatedToken(scopes: string[]): Promise<string> {
    const res = await fetch(`${idp.url}/tenant/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        client_id: CLIENT,
        client_secret: SECRET,
        refresh_token: idp.issueRefreshToken(CLIENT, MAILBOX, [...scopes, 'offline_access']),
        scope: [...scopes, 'offline_access'].join(' '),
      }),
    });
    return ((await res.json()) as { access_token: string }).access_token;
  }

  /** A message of this relay that is SENT, and the Exchange report about it in `folder`. */
  async function sentWithReport(id: string, folder: string): Promise<void> {
    const base = { messageId: id, sender: 'registrar', service: 'test' };
    await bus.publishStatus({ ...base, state: MessageState.QUEUED, attempt: 0, detail: 'accepted', client: 'app', recipientCount: 1 });
    await bus.publishStatus({ ...base, state: MessageState.SENT, attempt: 1, detail: '202 Accepted' });
    graph.deliver(MAILBOX, Buffer.from(fixture('exchange-online-5.1.10').toString('utf8').replaceAll(EXCHANGE_ID, id)), folder);
  }

  /** A delegated Graph sender (graph.flow: refresh_token) that reads `folder` for reports. */
  function delegatedSender(folder: string) {
    return parseConfig(
      `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: registrar
    from: ${MAILBOX}
    transport: graph
    graph: { flow: refresh_token, tenant_id: tenant, client_id: ${CLIENT}, client_secret: ${SECRET}, mailbox: ${MAILBOX}, graph_url: "${graph.url}" }
    feedback: { graph: true, folder: ${folder}, processed_folder: ${folder} done, interval: 50ms }
`,
      {},
    ).senders;
  }

  beforeAll(async () => {
    setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
    idp = await startIdentityFake({
      clients: { [CLIENT]: SECRET, [SEND_ONLY]: SECRET },
      appRoles: { [CLIENT]: ['Mail.Send', 'Mail.ReadWrite'], [SEND_ONLY]: ['Mail.Send'] },
    });
    graph = await startGraphFake({ identity: idp, mailboxes: { [MAILBOX]: { sendAs: [] } } });
    redis = new Redis(testRedisUrl());
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'graph-feedback-test' });
    client = createGraphClient({ tokens: tokens((s) => (s === 'send-only' ? SEND_ONLY : CLIENT)), slots: createMailboxSlots(redis, prefix, { pollMs: 5 }) });
    source = { sender: 'registrar', mailbox: MAILBOX, graphUrl: graph.url, folder: 'Inbox', processedFolder: 'Delivery reports', maxConcurrent: 4 };
  });
  afterAll(async () => {
    const keys = await redis?.keys(`${prefix}:*`);
    if (keys?.length) await redis.del(...keys);
    await redis?.quit();
    await bus?.close();
    await dropBus(prefix);
    await Promise.all([graph?.close(), idp?.close()]);
  });

  it('records an Exchange Online report on its message, moves it, and leaves other mail alone', async () => {
    const base = { messageId: EXCHANGE_ID, sender: 'registrar', service: 'test' };
    await bus.publishStatus({ ...base, state: MessageState.QUEUED, attempt: 0, detail: 'accepted', client: 'app', recipientCount: 1 });
    await bus.publishStatus({ ...base, state: MessageState.SENT, attempt: 1, detail: '202 Accepted' });
    graph.deliver(MAILBOX, fixture('exchange-online-5.1.10'));
    graph.deliver(MAILBOX, fixture('not-a-bounce'));
    graph.deliver(MAILBOX, fixture('gmail-5.1.1'));
    graph.deliver(MAILBOX, Buffer.concat([fixture('exchange-online-text'), Buffer.from('x'.repeat(10_000))]));

    const seen = new Set<string>();
    expect(await readGraphReportsOnce(bus, client, source, seen, log, 8_000)).toEqual({ read: 4, recorded: 1, moved: 1, left: 2, tooLarge: 1 });
    const last = (await bus.history(EXCHANGE_ID)).at(-1)!;
    expect(last.state).toBe(MessageState.BOUNCED);
    expect(last.outcomes.map((o) => [o.recipient, o.outcome, o.status])).toEqual([['gone@fabrikam.com', DeliveryOutcome.BOUNCED, '5.1.10']]);
    expect(graph.folderMessages(MAILBOX, 'Delivery reports').map((m) => m.equals(fixture('exchange-online-5.1.10')))).toEqual([true]);
    expect(graph.folderMessages(MAILBOX, 'Inbox')).toHaveLength(3);

    // What was left is not read again.
    expect(await readGraphReportsOnce(bus, client, source, seen, log, 8_000)).toEqual({ read: 0, recorded: 0, moved: 0, left: 0, tooLarge: 0 });
  });

  it('names a missing folder, and fails without Mail.ReadWrite', async () => {
    await expect(readGraphReportsOnce(bus, client, { ...source, folder: 'Bounces' }, new Set(), log)).rejects.toThrow(
      `mailbox ${MAILBOX} has no folder "Bounces" (feedback.folder)`,
    );
    await expect(readGraphReportsOnce(bus, client, { ...source, sender: 'send-only' }, new Set(), log)).rejects.toThrow(/ErrorAccessDenied/);
  });

  it("reads a delegated sender's reports with the mailbox's own token, which needs Mail.ReadWrite to move them", async () => {
    const token = await delegatedToken([SEND, READ_WRITE]);
    expect(idp.accessTokenGrant(token)).toEqual({ user: MAILBOX, scopes: [SEND, READ_WRITE] });
    const slots = createMailboxSlots(redis, prefix, { pollMs: 5 });
    const withToken = (t: string) => createGraphClient({ tokens: { get: async () => t }, slots });
    const id = '0193a5b2-eeee-7d10-8a2b-3c4d5e6f7a86';
    await sentWithReport(id, 'Delegated');
    const delegated = { ...source, folder: 'Delegated', processedFolder: 'Delegated done' };
    expect(await readGraphReportsOnce(bus, withToken(token), delegated, new Set(), log)).toMatchObject({ read: 1, recorded: 1, moved: 1 });
    expect((await bus.history(id)).at(-1)?.state).toBe(MessageState.BOUNCED);
    expect(graph.folderMessages(MAILBOX, 'Delegated done')).toHaveLength(1);

    // Mail.Read lists and reads the folder, but Graph refuses the move; Mail.Send alone reads nothing.
    await sentWithReport('0193a5b2-ffff-7d10-8a2b-3c4d5e6f7a87', 'Read only');
    const readOnly = { ...source, folder: 'Read only', processedFolder: 'Read only done' };
    const from = graph.requests.length;
    await expect(readGraphReportsOnce(bus, withToken(await delegatedToken([SEND, READ])), readOnly, new Set(), log)).rejects.toThrow(/ErrorAccessDenied/);
    const answers = graph.requests.slice(from).map((r) => `${r.method} ${r.status}`);
    expect(answers).toContain('GET 200');
    expect(answers.at(-1)).toBe('POST 403');
    expect(graph.folderMessages(MAILBOX, 'Read only')).toHaveLength(1);
    await expect(readGraphReportsOnce(bus, withToken(await delegatedToken([SEND])), readOnly, new Set(), log)).rejects.toThrow(/ErrorAccessDenied/);
  });

  it('logs the remedy for a sign-in without Mail.ReadWrite, and reads with a new token once the mailbox signed in again', async () => {
    const stale = await delegatedToken([SEND]);
    const renewed = await delegatedToken([SEND, READ_WRITE]);
    let signedInAgain = false;
    const asked: boolean[] = [];
    const refusal =
      'sender "registrar": its Microsoft sign-in was not granted the Graph delegated permission Mail.ReadWrite (granted: Mail.Send), so its delivery reports cannot be read (feedback.graph); sign in again with Authenticate with MFA to grant Mail.ReadWrite';
    // The credentials service: the token of the grant it holds, and what that token cannot do.
    const graphTokens = createGraphTokens({
      async getGraphToken(req) {
        asked.push(req.tokenRejected ?? false);
        const fresh = signedInAgain;
        signedInAgain = true;
        return create(GetGraphTokenResponseSchema, {
          accessToken: fresh ? renewed : stale,
          expiresAt: timestampFromDate(new Date(Date.now() + 3_600_000)),
          readRefusal: fresh ? '' : refusal,
        });
      },
    });
    const reader = createGraphClient({ tokens: graphTokens, slots: createMailboxSlots(redis, prefix, { pollMs: 5 }) });
    const id = '0193a5b2-abab-7d10-8a2b-3c4d5e6f7a88';
    await sentWithReport(id, 'Renewed');
    const warnings: string[] = [];
    const readers = startGraphFeedbackReaders(
      bus,
      reader,
      graphTokens,
      () => delegatedSender('Renewed'),
      { info() {}, warn: (obj: object) => warnings.push(String((obj as { err?: unknown }).err)) },
      20,
    );
    try {
      await eventually(async () => ((await bus.history(id)).at(-1)?.state === MessageState.BOUNCED ? true : undefined));
    } finally {
      await readers.stop();
    }
    expect(warnings[0]).toContain('sign in again with Authenticate with MFA to grant Mail.ReadWrite');
    // The pass after the refusal asked for a new token rather than the cached one.
    expect(asked.slice(0, 2)).toEqual([false, true]);
  });

  it('asks for a new token on the pass after Graph refused the read', async () => {
    const tokensHanded = [await delegatedToken([SEND]), await delegatedToken([SEND, READ_WRITE])];
    const asked: boolean[] = [];
    // The credentials service could not tell what the first token lacks: Graph says so.
    const graphTokens = createGraphTokens({
      async getGraphToken(req) {
        asked.push(req.tokenRejected ?? false);
        return create(GetGraphTokenResponseSchema, {
          accessToken: tokensHanded[Math.min(asked.length - 1, 1)]!,
          expiresAt: timestampFromDate(new Date(Date.now() + 3_600_000)),
        });
      },
    });
    const reader = createGraphClient({ tokens: graphTokens, slots: createMailboxSlots(redis, prefix, { pollMs: 5 }) });
    const id = '0193a5b2-acac-7d10-8a2b-3c4d5e6f7a89';
    await sentWithReport(id, 'Refused');
    const readers = startGraphFeedbackReaders(bus, reader, graphTokens, () => delegatedSender('Refused'), log, 20);
    try {
      await eventually(async () => ((await bus.history(id)).at(-1)?.state === MessageState.BOUNCED ? true : undefined));
    } finally {
      await readers.stop();
    }
    expect(asked.slice(0, 2)).toEqual([false, true]);
    expect(graph.folderMessages(MAILBOX, 'Refused done')).toHaveLength(1);
  });

  it('reads the folder of each sender with feedback.graph, until stopped', async () => {
    const id = '0193a5b2-dddd-7d10-8a2b-3c4d5e6f7a85';
    await bus.publishStatus({
      messageId: id,
      sender: 'registrar',
      service: 'test',
      state: MessageState.QUEUED,
      attempt: 0,
      detail: '',
      client: 'app',
      recipientCount: 2,
    });
    await bus.publishStatus({ messageId: id, sender: 'registrar', service: 'test', state: MessageState.SENT, attempt: 1, detail: '202 Accepted' });
    graph.deliver(MAILBOX, fixture('exchange-online-text'), 'Bounces');
    const cfg = parseConfig(
      `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]
senders:
  - id: registrar
    from: ${MAILBOX}
    transport: graph
    graph: { tenant_id: tenant, client_id: ${CLIENT}, client_secret: ${SECRET}, mailbox: ${MAILBOX}, graph_url: "${graph.url}" }
    feedback: { graph: true, folder: Bounces, processed_folder: Bounces done }
`,
      {},
    );
    const readers = startGraphFeedbackReaders(bus, client, { readRefusal: async () => '' }, () => cfg.senders, log, 50);
    try {
      await eventually(async () => ((await bus.history(id)).at(-1)?.state === MessageState.BOUNCED ? true : undefined));
      await eventually(() => (graph.folderMessages(MAILBOX, 'Bounces done').length === 1 ? true : undefined));
    } finally {
      await readers.stop();
    }
  });
});
