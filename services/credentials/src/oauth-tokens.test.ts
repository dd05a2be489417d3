import { randomBytes } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { Kvm } from '@nats-io/kv';
import { Redis } from 'ioredis';
import { connectBus, type Bus } from '@relay/bus';
import { parseConfig, type SenderConfig } from '@relay/config';
import { ErrorCode, isRelayError } from '@relay/core';
import { createLogger } from '@relay/telemetry';
import { dropBus, startIdentityFake, testCa, testNatsUrl, testRedisUrl, uniquePrefix, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSENT_QUERY_LIMITS, consentQuery, createConsent } from './consent.js';
import { openCredentialStatus } from './credential-status.js';
import { createOAuthTokens, type OAuthTokens } from './oauth-tokens.js';
import { createSecretBox } from './secret-box.js';
import { openRefreshTokenStore, secretsBucketName, type RefreshTokenStore } from './secret-store.js';
import { TokenCache } from './token-cache.js';
import { redeemCode, type OAuth2Auth } from './token-providers.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const box = createSecretBox(randomBytes(32));
let idp: IdentityFake;
let bus: Bus;
let redis: Redis;
let store: RefreshTokenStore;
let prefix: string;

const CLIENT_ID = 'app-1';
const CLIENT_SECRET = 'client-secret-value';

beforeAll(async () => {
  // MSAL and google-auth-library only speak HTTPS: trust the test CA in this process.
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({ clients: { [CLIENT_ID]: CLIENT_SECRET }, tokenDelayMs: 50 });
  prefix = uniquePrefix('cred');
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'oauth-tokens-test' });
  redis = new Redis(testRedisUrl());
  store = await openRefreshTokenStore(bus, box);
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
  await bus.jsm.streams.delete(`KV_${secretsBucketName(prefix)}`).catch(() => {});
  await bus.close();
  await dropBus(prefix);
  await idp.close();
});

function senders(refreshToken?: string): SenderConfig[] {
  const auth = (id: string, extra: string) => `
  - id: ${id}
    from: ${id}@campus.example
    transport: smtp
    smtp:
      host: 127.0.0.1
      port: 2525
      security: none
      auth: { type: oauth2, client_id: ${CLIENT_ID}, client_secret: ${CLIENT_SECRET}, user: ${id}@campus.example, authority_url: "${idp.url}", ${extra} }`;
  const text = `clients: [{ name: a, api_key: test-key-0123456789abcdef0123456789 }]\nsenders:${auth('app', 'provider: microsoft, tenant_id: t1, flow: client_credentials')}${auth(
    'delegated',
    `provider: microsoft, tenant_id: t1${refreshToken ? `, refresh_token: ${refreshToken}` : ''}`,
  )}${auth('gmail', `provider: google, token_url: "${idp.url}/token"${refreshToken ? `, refresh_token: ${refreshToken}` : ''}`)}`;
  return parseConfig(text, {}).senders;
}

const oauth = (s: SenderConfig) => s.smtp!.auth as OAuth2Auth;
const tokensFor = (p = prefix): OAuthTokens => createOAuthTokens({ cache: new TokenCache(redis, box, p), store, logger });
const count = (grant: string) => idp.tokenRequests.filter((r) => r.grantType === grant).length;

describe('OAuth2 tokens', () => {
  it('gets an app-only token once for a burst across two replicas, and caches it encrypted', async () => {
    const [app] = senders();
    const before = count('client_credentials');
    const replicas = [tokensFor(), tokensFor()];
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => replicas[i % 2]!.get('app', oauth(app!))));
    expect(new Set(got.map((t) => t.accessToken)).size).toBe(1);
    expect(idp.acceptsAccessToken(got[0]!.accessToken)).toBe(true);
    expect(count('client_credentials') - before).toBe(1);
    expect(idp.tokenRequests.at(-1)!.scope).toContain('https://outlook.office365.com/.default');
    const stored = await redis.get(`${prefix}:token:app`);
    expect(stored).toBeTruthy();
    expect(stored).not.toContain(got[0]!.accessToken);
    // Kept until 10 minutes before the hour-long token expires: then it is refreshed.
    const ttl = await redis.pttl(`${prefix}:token:app`);
    expect(ttl).toBeGreaterThan(2_900_000);
    expect(ttl).toBeLessThan(3_001_000);
    // expiry - 60 s; MSAL reckons expiry in whole seconds, hence the slack.
    expect(ttl).toBeLessThanOrEqual(3_542_000);
    // A rejected token is replaced by a new one.
    const fresh = await tokensFor().get('app', oauth(app!), { rejected: true });
    expect(fresh.accessToken).not.toBe(got[0]!.accessToken);
    expect(count('client_credentials') - before).toBe(2);
  });

  it('refreshes with an imported refresh token and persists the rotated one encrypted', async () => {
    const imported = idp.issueRefreshToken(CLIENT_ID, 'delegated@campus.example');
    const [, delegated] = senders(imported);
    const t = await tokensFor().get('delegated', oauth(delegated!));
    expect(idp.acceptsAccessToken(t.accessToken)).toBe(true);
    expect(idp.tokenRequests.at(-1)).toMatchObject({ grantType: 'refresh_token' });
    expect(idp.tokenRequests.at(-1)!.scope).toContain('https://outlook.office.com/SMTP.Send');
    const rotated = await store.get('delegated', imported);
    expect(rotated).not.toBe(imported);
    expect(idp.issuedRefreshTokens()).toContain(rotated);
    const kv = await new Kvm(bus.js).open(secretsBucketName(prefix));
    const raw = (await kv.get('refresh.delegated'))!.string();
    expect(raw).not.toContain(rotated!);
    expect(raw).not.toContain(imported);
    // The next refresh uses the rotated token (the imported one is retired at the fake).
    const again = await tokensFor().get('delegated', oauth(delegated!), { rejected: true });
    expect(idp.acceptsAccessToken(again.accessToken)).toBe(true);
  });

  it('refreshes a Google token through google-auth-library', async () => {
    const imported = idp.issueRefreshToken(CLIENT_ID, 'gmail@campus.example');
    const gmail = senders(imported)[2]!;
    const t = await tokensFor().get('gmail', oauth(gmail));
    expect(idp.acceptsAccessToken(t.accessToken)).toBe(true);
  });

  it('says the sender needs consent when the grant is dead', async () => {
    const [, delegated] = senders();
    const p = uniquePrefix('noconsent');
    const err1 = await tokensFor(p)
      .get('nobody', oauth(delegated!))
      .catch((e: unknown) => e);
    expect(isRelayError(err1) && err1.code).toBe(ErrorCode.FailedPrecondition);
    expect((err1 as Error).message).toMatch(/needs consent.*BeginConsent/);
    idp.failWith('invalid_grant');
    try {
      const [, withToken] = senders(idp.issueRefreshToken(CLIENT_ID));
      const err = await tokensFor(p)
        .get('expired', oauth(withToken!))
        .catch((e: unknown) => e);
      expect(isRelayError(err) && err.code).toBe(ErrorCode.FailedPrecondition);
      expect((err as Error).message).toMatch(/needs consent.*AADSTS700082.*Authenticate with MFA/);
      idp.failWith('invalid_client');
      const [app] = senders();
      const bad = await tokensFor(p)
        .get('app', oauth(app!))
        .catch((e: unknown) => e);
      expect(isRelayError(bad) && bad.code).toBe(ErrorCode.FailedPrecondition);
      expect((bad as Error).message).toMatch(/AADSTS7000215.*client_secret/);
    } finally {
      idp.failWith(undefined);
    }
  });

  it('completes a consent once: PKCE code redeemed, refresh token stored; replayed and forged states refused', async () => {
    const all = senders();
    const cache = new TokenCache(redis, box, prefix);
    const consent = createConsent({
      senders: new Map(all.map((s) => [s.id, s])),
      redis,
      box,
      store,
      cache,
      logger,
      prefix,
      publicUrl: 'http://localhost:8080',
      redeemCode,
    });
    const url = new URL(await consent.begin('delegated'));
    expect(url.origin + url.pathname).toBe(`${idp.url}/t1/oauth2/v2.0/authorize`);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('scope')).toBe('https://outlook.office.com/SMTP.Send offline_access openid profile');
    expect(url.searchParams.get('redirect_uri')).toBe('http://localhost:8080/oauth/callback');
    await expect(consent.begin('app')).rejects.toThrow(/client_credentials/);

    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const back = new URL(res.headers.get('location')!);
    expect((await consent.callback(new URLSearchParams({ state: 'forged', code: back.searchParams.get('code')! }))).status).toBe(400);
    const ok = await consent.callback(back.searchParams);
    expect(ok).toMatchObject({ status: 200 });
    const rt = await store.get('delegated');
    expect(idp.issuedRefreshTokens()).toContain(rt);
    expect((await consent.callback(back.searchParams)).status).toBe(400);
    const t = await createOAuthTokens({ cache, store, logger }).get('delegated', oauth(all[1]!), { rejected: true });
    expect(idp.acceptsAccessToken(t.accessToken)).toBe(true);
  });
});

describe('credential status', () => {
  it('notes who consented and when, then when each token was obtained and expires, and never a token', async () => {
    const all = senders();
    const status = await openCredentialStatus(bus);
    const p = uniquePrefix('status');
    const cache = new TokenCache(redis, box, p);
    const consent = createConsent({
      senders: new Map(all.map((s) => [s.id, s])),
      redis,
      box,
      store,
      cache,
      logger,
      prefix: p,
      publicUrl: 'http://localhost:8080',
      redeemCode,
      status,
    });
    await status.forget('delegated');
    const before = Date.now();
    const back = new URL((await fetch(await consent.begin('delegated'), { redirect: 'manual' })).headers.get('location')!);
    expect(await consent.callback(back.searchParams)).toMatchObject({ status: 200 });
    const consented = await status.get('delegated');
    expect(consented.consentedBy).toBe('delegated@campus.example');
    expect(Date.parse(consented.consentedAt!)).toBeGreaterThanOrEqual(before - 1);
    expect(consented.tokenRefreshedAt).toBeUndefined();

    const tokens = createOAuthTokens({ cache, store, logger, status });
    const first = await tokens.get('delegated', oauth(all[1]!));
    const once = await status.get('delegated');
    expect(once.tokenRefreshedAt).toBe(new Date(first.obtainedAt).toISOString());
    expect(once.tokenExpiresAt).toBe(new Date(first.expiresAt).toISOString());
    // A replaced token moves the refresh time on; the consent stays as it was.
    const second = await tokens.get('delegated', oauth(all[1]!), { rejected: true });
    const twice = await status.get('delegated');
    expect(twice.tokenRefreshedAt).toBe(new Date(second.obtainedAt).toISOString());
    expect(second.obtainedAt).toBeGreaterThanOrEqual(first.obtainedAt);
    expect(twice.consentedBy).toBe('delegated@campus.example');
    expect(twice.consentedAt).toBe(consented.consentedAt);

    const text = JSON.stringify(twice);
    for (const secret of [...idp.issuedRefreshTokens(), ...idp.issuedAccessTokens(), CLIENT_SECRET]) expect(text).not.toContain(secret);
    const raw = await (await new Kvm(bus.js).open(secretsBucketName(prefix))).get('status.delegated');
    expect(JSON.parse(raw!.string())).toEqual(twice);
  });
});

describe('consent binds the right account', () => {
  const consentFor = (all: SenderConfig[], p: string) =>
    createConsent({
      senders: new Map(all.map((s) => [s.id, s])),
      redis,
      box,
      store,
      cache: new TokenCache(redis, box, p),
      logger,
      prefix: p,
      publicUrl: 'http://localhost:8080',
      redeemCode,
    });

  /** Signs in at the fake (Google's authorize URL is replayed against it) and returns the redirect's query. */
  async function signIn(authorizeUrl: string): Promise<URLSearchParams> {
    const url = new URL(authorizeUrl);
    const at = url.host === new URL(idp.url).host ? url : new URL(`${idp.url}/google/oauth2/v2.0/authorize${url.search}`);
    const res = await fetch(at, { redirect: 'manual' });
    expect(res.status).toBe(302);
    return new URL(res.headers.get('location')!).searchParams;
  }

  it.each(['delegated', 'gmail'])('%s: another account signing in is refused and nothing is stored', async (id) => {
    const p = uniquePrefix('wrongacct');
    const consent = consentFor(senders(), p);
    const url = await consent.begin(id);
    expect(new URL(url).searchParams.get('scope')!.split(' ')).toContain('openid');
    const before = await store.get(id);
    idp.signInAs('mallory@elsewhere.example');
    let back: URLSearchParams;
    try {
      back = await signIn(url);
    } finally {
      idp.signInAs(undefined);
    }
    const r = await consent.callback(back);
    expect(r.status).toBe(403);
    expect(r.message).toMatch(new RegExp(`signed in as mallory@elsewhere\\.example, but sender "${id}" sends as ${id}@campus\\.example\\. Nothing was stored`));
    expect(await store.get(id)).toBe(before);
  });

  it('Google: an address the id token does not call verified names no account, so nothing is stored', async () => {
    const p = uniquePrefix('unverified');
    const consent = consentFor(senders(), p);
    const before = await store.get('gmail');
    const url = await consent.begin('gmail');
    // The id token comes with the code's redemption, in the callback.
    idp.emailVerified(undefined);
    let r: Awaited<ReturnType<typeof consent.callback>>;
    try {
      r = await consent.callback(await signIn(url));
    } finally {
      idp.emailVerified(true);
    }
    expect(r.status).toBe(403);
    expect(r.message).toMatch(/did not say which account signed in/);
    expect(await store.get('gmail')).toBe(before);
  });

  it('the configured account, in any letter case, is accepted', async () => {
    const p = uniquePrefix('rightacct');
    const consent = consentFor(senders(), p);
    const url = await consent.begin('gmail');
    idp.signInAs('GMAIL@Campus.Example');
    let back: URLSearchParams;
    try {
      back = await signIn(url);
    } finally {
      idp.signInAs(undefined);
    }
    expect(await consent.callback(back)).toMatchObject({ status: 200 });
    expect(idp.issuedRefreshTokens()).toContain(await store.get('gmail'));
  });

  it('reads only the redirect fields it was given, each within its bound', async () => {
    const p = uniquePrefix('query');
    const consent = consentFor(senders(), p);
    const state = new URL(await consent.begin('delegated')).searchParams.get('state')!;
    const long = 'x'.repeat(CONSENT_QUERY_LIMITS.error_description + 100);
    const q = consentQuery({ state, code: '', error: 'access_denied', errorDescription: long });
    expect([...q.keys()]).toEqual(['state', 'error', 'error_description']);
    expect(q.get('error_description')).toHaveLength(CONSENT_QUERY_LIMITS.error_description);
    const r = await consent.callback(q);
    expect(r.status).toBe(400);
    expect(r.message).toMatch(/did not grant access for sender "delegated"/);
    // An over-long state, cut to its bound, matches no pending sign-in.
    expect((await consent.callback(consentQuery({ state: state + 'y'.repeat(600), code: 'c', error: '', errorDescription: '' }))).status).toBe(400);
  });
});
