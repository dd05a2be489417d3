import { randomBytes } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { Redis } from 'ioredis';
import { connectBus, type Bus } from '@relay/bus';
import { parseConfig, type SenderConfig } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import { dropBus, startGraphFake, startIdentityFake, testCa, testNatsUrl, testRedisUrl, uniquePrefix, type GraphFake, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsent } from './consent.js';
import { refreshTokenAuth } from './credential-expiry.js';
import { graphTokenFor } from './graph-auth.js';
import { graphReadRefusal, needsGraphReadScope } from './graph-read-scope.js';
import { testGraphSender } from './graph-test.js';
import { createOAuthTokens } from './oauth-tokens.js';
import { createSecretBox } from './secret-box.js';
import { openRefreshTokenStore, secretsBucketName, type RefreshTokenStore } from './secret-store.js';
import { TokenCache } from './token-cache.js';
import { redeemCode } from './token-providers.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const box = createSecretBox(randomBytes(32));
const CLIENT_ID = 'reports-app';
const SECRET = 'reports-app-secret-value';
const MAILBOX = 'admissions@campus.example';
const SEND = 'https://graph.microsoft.com/Mail.Send';
const READ = 'https://graph.microsoft.com/Mail.ReadWrite';
let idp: IdentityFake;
let graph: GraphFake;
let bus: Bus;
let redis: Redis;
let store: RefreshTokenStore;
let senders: Map<string, SenderConfig>;
const prefix = uniquePrefix('graphread');

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({ clients: { [CLIENT_ID]: SECRET }, appRoles: { [CLIENT_ID]: ['Mail.Send', 'Mail.ReadWrite'] } });
  graph = await startGraphFake({ identity: idp, mailboxes: { [MAILBOX]: {} } });
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'graph-read-scope-test' });
  redis = new Redis(testRedisUrl());
  store = await openRefreshTokenStore(bus, box);
  const sender = (id: string, flow: string, feedback: boolean) => `
  - id: ${id}
    from: ${MAILBOX}
    transport: graph
    graph: { flow: ${flow}, tenant_id: t-adm, client_id: ${CLIENT_ID}, client_secret: ${SECRET}, mailbox: ${MAILBOX}, authority_url: "${idp.url}", graph_url: "${graph.url}" }${feedback ? '\n    feedback: { graph: true }' : ''}`;
  const config = parseConfig(
    `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]\nsenders:${[
      sender('reports', 'refresh_token', true),
      sender('stale', 'refresh_token', true),
      sender('send-only', 'refresh_token', false),
      sender('app-only', 'client_credentials', true),
    ].join('')}`,
    {},
  );
  senders = new Map(config.senders.map((s) => [s.id, s]));
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
  await bus.jsm.streams.delete(`KV_${secretsBucketName(prefix)}`).catch(() => {});
  await bus.close();
  await dropBus(prefix);
  await Promise.all([graph.close(), idp.close()]);
});

const cache = () => new TokenCache(redis, box, prefix);
const consentWith = () => createConsent({ senders, redis, box, store, cache: cache(), logger, prefix, publicUrl: 'http://localhost:8080', redeemCode });
const scopeOf = async (sender: string) => new URL(await consentWith().begin(sender)).searchParams.get('scope');
const signIn = async (sender: string) => {
  const consent = consentWith();
  const res = await fetch(await consent.begin(sender), { redirect: 'manual' });
  expect(await consent.callback(new URL(res.headers.get('location')!).searchParams)).toMatchObject({ status: 200 });
};
/** Lists the mailbox's Inbox with the token, as the report reader does first. */
const listInbox = async (token: string) =>
  (await fetch(`${graph.url}/v1.0/users/${encodeURIComponent(MAILBOX)}/mailFolders/inbox/messages?$top=1`, { headers: { authorization: `Bearer ${token}` } }))
    .status;

describe('Mail.ReadWrite for delegated Graph senders that read their delivery reports (feedback.graph)', () => {
  it('asks for it in the sign-in and the keep-alive refresh only with feedback.graph', async () => {
    expect(await scopeOf('reports')).toBe(`${SEND} ${READ} offline_access openid profile`);
    expect(await scopeOf('send-only')).toBe(`${SEND} offline_access openid profile`);
    expect(refreshTokenAuth(senders.get('reports')!)?.scopes).toEqual([SEND, READ, 'offline_access']);
    expect(refreshTokenAuth(senders.get('send-only')!)?.scopes).toEqual([SEND, 'offline_access']);
    // App-only senders sign in nobody; their Mail.ReadWrite is the application's.
    expect(needsGraphReadScope(senders.get('app-only')!)).toBe(false);
    expect(graphReadRefusal(senders.get('app-only')!, [])).toBe('');
  });

  it('hands out one token that sends and reads once the mailbox signed in', async () => {
    await signIn('reports');
    const tokens = createOAuthTokens({ cache: cache(), store, logger });
    const res = await graphTokenFor(senders.get('reports'), 'reports', tokens);
    expect(res.readRefusal).toBe('');
    expect(idp.accessTokenGrant(res.accessToken)).toEqual({ user: MAILBOX, scopes: [SEND, READ] });
    const refresh = idp.tokenRequests.filter((r) => r.tenant === 't-adm' && r.grantType === 'refresh_token').at(-1)!;
    expect(refresh.scope.split(' ')).toEqual(expect.arrayContaining([SEND, READ]));
    expect(await listInbox(res.accessToken)).toBe(200);
  });

  it('keeps sending with a sign-in from before, and tells the report reader and TestSender to sign in again', async () => {
    // Consented when the sign-in asked for Mail.Send only.
    await store.put('stale', idp.issueRefreshToken(CLIENT_ID, MAILBOX, [SEND, 'offline_access']), 'consent');
    const before = idp.tokenRequests.length;
    const tokens = createOAuthTokens({ cache: cache(), store, logger });
    const res = await graphTokenFor(senders.get('stale'), 'stale', tokens);
    expect(idp.accessTokenGrant(res.accessToken)).toEqual({ user: MAILBOX, scopes: [SEND] });
    expect(res.readRefusal).toBe(
      'sender "stale": its Microsoft sign-in was not granted the Graph delegated permission Mail.ReadWrite (granted: Mail.Send), so its delivery reports cannot be read (feedback.graph); sign in again with Authenticate with MFA to grant Mail.ReadWrite',
    );
    // Asked with Mail.ReadWrite first (refused: not consented), then with what the grant covers.
    expect(idp.tokenRequests.slice(before).map((r) => r.scope.split(' ').includes(READ))).toEqual([true, false]);
    // Graph refuses the reading, not the sending.
    expect(await listInbox(res.accessToken)).toBe(403);

    const test = await testGraphSender({ ...senders.get('stale')!, graph: senders.get('stale')!.graph! }, 'stale', tokens);
    expect(test.ok).toBe(false);
    expect(test.steps.map((s) => [s.name, s.ok])).toEqual([
      ['token', true],
      ['reports permission', false],
      ['permission', true],
      ['mailbox', true],
    ]);
    expect(test.steps[1]!.detail).toContain('sign in again with Authenticate with MFA to grant Mail.ReadWrite');
    expect(test.remedy).toBe('Press "Authenticate with MFA" and sign in as the mailbox again: the new sign-in grants Mail.ReadWrite.');

    // A new sign-in grants it: the same sender's next token reads.
    await signIn('stale');
    const renewed = await graphTokenFor(senders.get('stale'), 'stale', createOAuthTokens({ cache: cache(), store, logger }));
    expect(renewed.readRefusal).toBe('');
    expect(idp.accessTokenGrant(renewed.accessToken)?.scopes).toContain(READ);
    expect(await listInbox(renewed.accessToken)).toBe(200);
  });
});
