import { randomBytes } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { Redis } from 'ioredis';
import { connectBus, type Bus } from '@relay/bus';
import { parseConfig, type SenderConfig } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import { dropBus, startGraphFake, startIdentityFake, testCa, testNatsUrl, testRedisUrl, uniquePrefix, type GraphFake, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsent } from './consent.js';
import { graphTokenFor } from './graph-auth.js';
import { testGraphSender } from './graph-test.js';
import { tokenScopes } from './graph-read-scope.js';
import { createOAuthTokens } from './oauth-tokens.js';
import { createSecretBox } from './secret-box.js';
import { openRefreshTokenStore, secretsBucketName, type RefreshTokenStore } from './secret-store.js';
import { TokenCache } from './token-cache.js';
import { redeemCode } from './token-providers.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const box = createSecretBox(randomBytes(32));
const CLIENT_ID = 'dept-app';
const SECRET = 'dept-app-secret-value';
const MAILBOX = 'history-dept@campus.example';
let idp: IdentityFake;
let graph: GraphFake;
let bus: Bus;
let redis: Redis;
let store: RefreshTokenStore;
let senders: Map<string, SenderConfig>;
const prefix = uniquePrefix('gdel');

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({ clients: { [CLIENT_ID]: SECRET } });
  graph = await startGraphFake({ identity: idp, mailboxes: { [MAILBOX]: {}, 'dean@campus.example': {} } });
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'graph-delegated-test' });
  redis = new Redis(testRedisUrl());
  store = await openRefreshTokenStore(bus, box);
  const graphSender = (id: string, extra: string) => `
  - id: ${id}
    from: ${MAILBOX}
    transport: graph
    graph: { tenant_id: t-dept, client_id: ${CLIENT_ID}, client_secret: ${SECRET}, mailbox: ${MAILBOX}, authority_url: "${idp.url}", graph_url: "${graph.url}"${extra} }`;
  const config = parseConfig(
    `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]\nsenders:${graphSender('history', ', flow: refresh_token')}${graphSender('app-only', '')}`,
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

const consentWith = () =>
  createConsent({ senders, redis, box, store, cache: new TokenCache(redis, box, prefix), logger, prefix, publicUrl: 'http://localhost:8080', redeemCode });

async function post(url: string, token: string): Promise<number> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      message: { subject: 's', body: { contentType: 'Text', content: 'x' }, toRecipients: [{ emailAddress: { address: 'a@campus.example' } }] },
    }),
  });
  await res.arrayBuffer();
  return res.status;
}

describe('delegated consent for a Graph sender (graph.flow: refresh_token)', () => {
  it('refuses a sign-in for an app-only Graph sender, saying how to switch', async () => {
    await expect(consentWith().begin('app-only')).rejects.toThrow(
      /there is nobody to sign in.*For delegated Mail\.Send signed in by the mailbox instead, set graph\.flow: refresh_token$/,
    );
  });

  it('asks for Graph Mail.Send with offline_access, stores the refresh token, and gets delegated tokens the mailbox may send with', async () => {
    const consent = consentWith();
    const url = new URL(await consent.begin('history'));
    expect(url.origin + url.pathname).toBe(`${idp.url}/t-dept/oauth2/v2.0/authorize`);
    expect(url.searchParams.get('scope')).toBe('https://graph.microsoft.com/Mail.Send offline_access openid profile');
    expect(url.searchParams.get('login_hint')).toBe(MAILBOX);
    const res = await fetch(url, { redirect: 'manual' });
    const back = new URL(res.headers.get('location')!);
    expect(await consent.callback(back.searchParams)).toMatchObject({ status: 200 });
    expect(idp.issuedRefreshTokens()).toContain(await store.get('history'));

    const tokens = createOAuthTokens({ cache: new TokenCache(redis, box, prefix), store, logger });
    const got = await graphTokenFor(senders.get('history'), 'history', tokens);
    const req = idp.tokenRequests.at(-1)!;
    expect(req.grantType).toBe('refresh_token');
    expect(req.scope.split(' ')).toContain('https://graph.microsoft.com/Mail.Send');
    expect(tokenScopes(got.accessToken)).toEqual(['Mail.Send']);

    // The consenting mailbox's own sendMail (by address or as /me) is accepted; another mailbox's is not.
    expect(await post(`${graph.url}/v1.0/users/${encodeURIComponent(MAILBOX)}/sendMail`, got.accessToken)).toBe(202);
    expect(await post(`${graph.url}/v1.0/me/sendMail`, got.accessToken)).toBe(202);
    expect(await post(`${graph.url}/v1.0/users/dean%40campus.example/sendMail`, got.accessToken)).toBe(403);
    expect(graph.sent.map((m) => m.mailbox)).toEqual([MAILBOX, MAILBOX]);
  });

  it('TestSender lists the delegated permissions of the mailbox token and sends a test message', async () => {
    const tokens = createOAuthTokens({ cache: new TokenCache(redis, box, prefix), store, logger });
    const history = senders.get('history')!;
    const r = await testGraphSender({ ...history, graph: history.graph! }, 'history', tokens, { to: 'a@campus.example' });
    expect(r.ok).toBe(true);
    expect(r.steps.map((st) => st.name)).toEqual(['token', 'permission', 'mailbox', 'send']);
    expect(r.steps[0]!.detail).toMatch(new RegExp(`^delegated Graph token of ${MAILBOX} for tenant t-dept`));
    expect(r.steps[1]!.detail).toMatch(/^delegated permissions: Mail\.Send; Mail\.Send present; no Mail\.ReadWrite/);
  });

  it('refuses the sign-in of another account than the mailbox', async () => {
    const consent = consentWith();
    idp.signInAs('dean@campus.example');
    try {
      const res = await fetch(await consent.begin('history'), { redirect: 'manual' });
      const r = await consent.callback(new URL(res.headers.get('location')!).searchParams);
      expect(r).toEqual({
        status: 403,
        message: `You signed in as dean@campus.example, but sender "history" sends as ${MAILBOX}. Nothing was stored. Sign out, then start again with "Authenticate with MFA" and sign in as ${MAILBOX}.`,
      });
    } finally {
      idp.signInAs(undefined);
    }
  });
});
