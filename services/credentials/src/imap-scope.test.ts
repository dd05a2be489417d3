import { randomBytes } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { Redis } from 'ioredis';
import { connectBus, type Bus } from '@relay/bus';
import { parseConfig, type SenderConfig } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import { dropBus, freePort, startIdentityFake, testCa, testNatsUrl, testRedisUrl, uniquePrefix, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsent } from './consent.js';
import { needsImapScope } from './imap-scope.js';
import { createOAuthTokens } from './oauth-tokens.js';
import { createSecretBox } from './secret-box.js';
import { openRefreshTokenStore, secretsBucketName, type RefreshTokenStore } from './secret-store.js';
import { testSender } from './sender-test.js';
import { smtpAuthFor } from './smtp-auth.js';
import { TokenCache } from './token-cache.js';
import { redeemCode } from './token-providers.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const box = createSecretBox(randomBytes(32));
const CLIENT_ID = 'registrar-app';
const SECRET = 'registrar-app-secret-value';
const MAILBOX = 'registrar@campus.example';
const SMTP_SEND = 'https://outlook.office.com/SMTP.Send';
const IMAP = 'https://outlook.office.com/IMAP.AccessAsUser.All';
let idp: IdentityFake;
let bus: Bus;
let redis: Redis;
let store: RefreshTokenStore;
let senders: Map<string, SenderConfig>;
const prefix = uniquePrefix('imapscope');

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({ clients: { [CLIENT_ID]: SECRET } });
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'imap-scope-test' });
  redis = new Redis(testRedisUrl());
  store = await openRefreshTokenStore(bus, box);
  // Nothing listens there: TestSender's SMTP steps stop at connect.
  const closed = await freePort();
  const auth = (flow: string) =>
    `{ type: oauth2, provider: microsoft, flow: ${flow}, tenant_id: t-reg, client_id: ${CLIENT_ID}, client_secret: ${SECRET}, user: ${MAILBOX}, authority_url: "${idp.url}" }`;
  const sender = (id: string, host: string, extra: string, flow = 'refresh_token') => `
  - id: ${id}
    from: ${MAILBOX}
    transport: smtp
    smtp: { host: ${host}, port: ${host === '127.0.0.1' ? closed : 587}, security: starttls, auth: ${auth(flow)} }${extra}`;
  const imap = '\n    feedback: { imap: { host: 127.0.0.1, port: 993 } }';
  const config = parseConfig(
    `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]\nsenders:${[
      sender('copy', 'smtp.office365.com', '\n    copy_to_sent: true'),
      sender('reports', '127.0.0.1', imap),
      sender('stale', '127.0.0.1', imap),
      sender('smtp-only', 'smtp.office365.com', ''),
      sender('app-only', 'smtp.office365.com', '\n    copy_to_sent: true', 'client_credentials'),
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
  await idp.close();
});

const cache = () => new TokenCache(redis, box, prefix);
const consentWith = () => createConsent({ senders, redis, box, store, cache: cache(), logger, prefix, publicUrl: 'http://localhost:8080', redeemCode });
const scopeOf = async (sender: string) => new URL(await consentWith().begin(sender)).searchParams.get('scope');

describe('IMAP.AccessAsUser.All for delegated Microsoft senders that open their mailbox over IMAP', () => {
  it('asks for it in the sign-in only for copy_to_sent or feedback.imap', async () => {
    expect(await scopeOf('copy')).toBe(`${SMTP_SEND} ${IMAP} offline_access openid profile`);
    expect(await scopeOf('reports')).toBe(`${SMTP_SEND} ${IMAP} offline_access openid profile`);
    expect(await scopeOf('smtp-only')).toBe(`${SMTP_SEND} offline_access openid profile`);
    // App-only senders sign in nobody; their IMAP right is the application's (IMAP.AccessAsApp).
    expect(needsImapScope(senders.get('app-only')!)).toBe(false);
  });

  it('hands out one token that carries SMTP.Send and IMAP once the mailbox signed in', async () => {
    const consent = consentWith();
    const res = await fetch(await consent.begin('reports'), { redirect: 'manual' });
    expect(await consent.callback(new URL(res.headers.get('location')!).searchParams)).toMatchObject({ status: 200 });
    const tokens = createOAuthTokens({ cache: cache(), store, logger });
    const auth = await smtpAuthFor(senders.get('reports'), 'reports', tokens);
    expect(auth.imapRefusal).toBe('');
    expect(idp.accessTokenGrant(auth.accessToken)).toEqual({ user: MAILBOX, scopes: [SMTP_SEND, IMAP] });
    const refresh = idp.tokenRequests.filter((r) => r.tenant === 't-reg' && r.grantType === 'refresh_token').at(-1)!;
    expect(refresh.scope.split(' ')).toEqual(expect.arrayContaining([SMTP_SEND, IMAP]));
  });

  it('keeps SMTP going with a refresh token from before, and tells IMAP to sign in again', async () => {
    // Consented when the sign-in asked for SMTP.Send only.
    await store.put('stale', idp.issueRefreshToken(CLIENT_ID, MAILBOX, [SMTP_SEND, 'offline_access']), 'consent');
    const before = idp.tokenRequests.length;
    const tokens = createOAuthTokens({ cache: cache(), store, logger });
    const auth = await smtpAuthFor(senders.get('stale'), 'stale', tokens);
    expect(idp.accessTokenGrant(auth.accessToken)).toEqual({ user: MAILBOX, scopes: [SMTP_SEND] });
    expect(auth.imapRefusal).toBe(
      `sender "stale": its Microsoft sign-in was not granted ${IMAP} (granted: ${SMTP_SEND}), so IMAP refuses its token; sign in again with Authenticate with MFA to grant IMAP.AccessAsUser.All`,
    );
    // Asked with IMAP first (refused: not consented), then with what the grant covers.
    const asked = idp.tokenRequests.slice(before).map((r) => r.scope.split(' ').includes(IMAP));
    expect(asked).toEqual([true, false]);

    const test = await testSender(senders.get('stale'), 'stale', tokens);
    expect(test.ok).toBe(false);
    expect(test.steps.slice(0, 2).map((s) => [s.name, s.ok])).toEqual([
      ['token', true],
      ['IMAP permission', false],
    ]);
    expect(test.steps[1]!.detail).toContain('sign in again with Authenticate with MFA to grant IMAP.AccessAsUser.All');

    // A new sign-in grants it: the same sender's next token opens IMAP.
    const consent = consentWith();
    const res = await fetch(await consent.begin('stale'), { redirect: 'manual' });
    expect(await consent.callback(new URL(res.headers.get('location')!).searchParams)).toMatchObject({ status: 200 });
    const renewed = await smtpAuthFor(senders.get('stale'), 'stale', createOAuthTokens({ cache: cache(), store, logger }));
    expect(renewed.imapRefusal).toBe('');
    expect(idp.accessTokenGrant(renewed.accessToken)?.scopes).toContain(IMAP);
  });
});
