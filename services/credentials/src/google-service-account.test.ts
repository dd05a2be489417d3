import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { Redis } from 'ioredis';
import { parseConfig, type SenderConfig } from '@relay/config';
import { ErrorCode, isRelayError } from '@relay/core';
import { createLogger } from '@relay/telemetry';
import { startIdentityFake, testCa, testRedisUrl, uniquePrefix, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsent } from './consent.js';
import { JWT_BEARER_GRANT } from './google-service-account.js';
import { createOAuthTokens } from './oauth-tokens.js';
import { createSecretBox } from './secret-box.js';
import type { RefreshTokenStore } from './secret-store.js';
import { TokenCache } from './token-cache.js';
import { fetchToken, type OAuth2Auth } from './token-providers.js';

const EMAIL = 'relay-mailer@campus-relay.iam.gserviceaccount.com';
const MAILBOX = 'no-reply@campus.example';
const pair = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const key = pair();
const strangerKey = pair();
let idp: IdentityFake;
let redis: Redis;
const prefix = uniquePrefix('gsa');

beforeAll(async () => {
  // The token endpoint speaks HTTPS only: trust the test CA in this process.
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({
    clients: {},
    serviceAccounts: { [EMAIL]: { publicKeyPem: key.publicKey.export({ type: 'spki', format: 'pem' }).toString(), users: [MAILBOX] } },
  });
  redis = new Redis(testRedisUrl());
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
  await idp.close();
});

function sender(o: { user?: string; privateKey?: string; clientId?: string } = {}): SenderConfig {
  return parseConfig(
    `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]
senders:
  - id: gmail
    from: ${MAILBOX}
    transport: smtp
    smtp: { host: smtp.gmail.com, port: 587, security: starttls, auth: { type: oauth2, provider: google, flow: service_account, ${o.clientId ? `client_id: "${o.clientId}", ` : ''}user: ${o.user ?? MAILBOX}, service_account: { client_email: ${EMAIL}, private_key: env:SA_KEY }, token_url: "${idp.url}/token" } }
`,
    { SA_KEY: o.privateKey ?? key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
  ).senders[0]!;
}
const auth = (s: SenderConfig) => s.smtp!.auth as OAuth2Auth;

async function refusal(p: Promise<unknown>): Promise<{ code: ErrorCode; message: string }> {
  try {
    await p;
  } catch (err) {
    if (!isRelayError(err)) throw err;
    return { code: err.code, message: err.message };
  }
  throw new Error('no error');
}

describe('Google service account with domain-wide delegation (JWT bearer grant)', () => {
  it('says where in the Google Admin console to grant delegation when it is not granted', async () => {
    expect(await refusal(fetchToken('gmail', auth(sender({ clientId: '1234567890' })), undefined))).toEqual({
      code: ErrorCode.FailedPrecondition,
      message:
        'sender "gmail": Google has not granted domain-wide delegation to service account relay-mailer@campus-relay.iam.gserviceaccount.com for the scope https://mail.google.com/ (unauthorized_client: Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.); in the Google Admin console (admin.google.com): Security → Access and data control → API controls → Domain-wide delegation → Add new, enter client ID 1234567890 and the OAuth scope https://mail.google.com/, then Authorize (it can take up to 24 hours to apply)',
    });
    // Without a client id configured, the message says where to find it.
    expect((await refusal(fetchToken('gmail', auth(sender()), undefined))).message).toContain(
      `enter the service account's client ID (Google Cloud console: IAM & Admin → Service accounts → ${EMAIL} → Unique ID) and the OAuth scope https://mail.google.com/`,
    );
  });

  it('gets a token for the mailbox once delegation is granted: RS256 assertion with iss, sub, scope, aud and an hour at most', async () => {
    idp.delegate(EMAIL, ['https://mail.google.com/']);
    const token = await fetchToken('gmail', auth(sender()), undefined);
    expect(idp.acceptsAccessToken(token.accessToken)).toBe(true);
    expect(token.expiresAt.getTime()).toBeGreaterThan(Date.now() + 3_000_000);
    const req = idp.tokenRequests.at(-1)!;
    expect(req).toMatchObject({ grantType: JWT_BEARER_GRANT, clientId: EMAIL, scope: 'https://mail.google.com/', clientAuth: 'assertion' });
    const c = req.bearerClaims!;
    expect(c).toMatchObject({ iss: EMAIL, sub: MAILBOX, scope: 'https://mail.google.com/', aud: `${idp.url}/token` });
    expect((c.exp as number) - (c.iat as number)).toBe(3600);
  });

  it('names the cause when Google refuses the key or the mailbox', async () => {
    const stranger = strangerKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(await refusal(fetchToken('gmail', auth(sender({ privateKey: stranger })), undefined))).toEqual({
      code: ErrorCode.FailedPrecondition,
      message: `sender "gmail": Google refused the signature of service account ${EMAIL} (invalid_grant: Invalid JWT Signature.): its key was deleted or disabled, or is not this account's; create a key under IAM & Admin → Service accounts → ${EMAIL} → Keys → Add key → Create new key → JSON, and configure it`,
    });
    expect(await refusal(fetchToken('gmail', auth(sender({ user: 'former-staff@campus.example' })), undefined))).toEqual({
      code: ErrorCode.FailedPrecondition,
      message:
        'sender "gmail": Google does not know the mailbox former-staff@campus.example (invalid_grant: Invalid email or User ID); smtp.auth.user must be the primary address of an existing user in the Workspace domain that granted the delegation',
    });
  });

  it('has nobody to sign in: BeginConsent says where delegation is granted instead', async () => {
    const consent = createConsent({
      senders: new Map([['gmail', sender()]]),
      redis,
      box: createSecretBox(randomBytes(32)),
      store: {} as RefreshTokenStore,
      cache: new TokenCache(redis, createSecretBox(randomBytes(32)), prefix),
      logger: createLogger({ service: 'test', level: 'silent' }),
      prefix,
      publicUrl: 'http://localhost:8080',
      redeemCode: async () => {
        throw new Error('not called');
      },
    });
    await expect(consent.begin('gmail')).rejects.toThrow(
      'sender "gmail" uses flow: service_account (Google domain-wide delegation); there is nobody to sign in. A Google Workspace administrator grants the delegation in the Google Admin console: Security → Access and data control → API controls → Domain-wide delegation',
    );
  });

  it('names the host and the cause when the token endpoint cannot be reached', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const a = { ...auth(sender()), tokenUrl: `https://127.0.0.1:${port}/token` };
    expect(await refusal(fetchToken('gmail', a, undefined))).toEqual({
      code: ErrorCode.Unavailable,
      message: `sender "gmail": cannot reach the identity platform at 127.0.0.1:${port}: connection refused; allow outbound TCP ${port} from the relay to 127.0.0.1 (firewall, proxy)`,
    });
  });

  it('caches the token for every replica and asks again only when it was rejected', async () => {
    // No refresh token is involved: the store must not be read.
    const store = new Proxy({} as RefreshTokenStore, {
      get: () => () => {
        throw new Error('the refresh token store was used');
      },
    });
    const logger = createLogger({ service: 'test', level: 'silent' });
    const box = createSecretBox(randomBytes(32));
    const replicas = [0, 1].map(() => createOAuthTokens({ cache: new TokenCache(redis, box, prefix), store, logger }));
    const bearer = () => idp.tokenRequests.filter((r) => r.grantType === JWT_BEARER_GRANT).length;
    const before = bearer();
    const a = auth(sender());
    const [t1, t2] = await Promise.all(replicas.map((r) => r.get('gmail', a)));
    expect(t1!.accessToken).toBe(t2!.accessToken);
    expect(bearer()).toBe(before + 1);
    const replaced = await replicas[0]!.get('gmail', a, { rejected: true });
    expect(replaced.accessToken).not.toBe(t1!.accessToken);
    expect(bearer()).toBe(before + 2);
  });
});
