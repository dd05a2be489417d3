import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import { credentials, makeGenericClientConstructor, Metadata, type ServiceError } from '@grpc/grpc-js';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import {
  AdminService,
  BeginConsentRequestSchema,
  GetSenderRequestSchema,
  GetSenderResponseSchema,
  MessageState,
  toGrpcDefinition,
  type BeginConsentResponse,
  type GetSenderResponse,
  type TestSenderResponse,
} from '@relay/proto';
import { toJsonString } from '@bufbuild/protobuf';
import {
  clientEntry,
  FAST_DELIVERY,
  type IdentityFake,
  newClient,
  type Stack,
  startIdentityFake,
  startSmtpServer,
  startStack,
  testCa,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLIENT_ID = 'relay-app';
const CLIENT_SECRET = 'app-client-secret-Zq8~value';
const SMTP_PASSWORD = 'plain-password-never-stored';

let idp: IdentityFake;
let smtp: TestSmtpServer;
let stack: Stack;
let client: TestClient;
let importedRefreshToken: string;

const app = newClient('billing-app', ['app-only', 'burst', 'delegated', 'consented', 'password', 'wrong-password']);
const ops = newClient('it-ops', [], true);

function oauthSender(id: string, auth: Record<string, unknown>): Record<string, unknown> {
  return {
    id,
    from: `${id}@campus.example`,
    transport: 'smtp',
    smtp: {
      host: '127.0.0.1',
      port: smtp.port,
      security: 'starttls',
      servername: 'localhost',
      ca_file: testCa().caFile,
      auth: {
        type: 'oauth2',
        provider: 'microsoft',
        client_id: CLIENT_ID,
        client_secret: 'env:APP_CLIENT_SECRET',
        user: `${id}@campus.example`,
        authority_url: idp.url,
        ...auth,
      },
    },
  };
}

beforeAll(async () => {
  // This process plays the browser that signs in at the identity platform double.
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({ clients: { [CLIENT_ID]: CLIENT_SECRET }, tokenDelayMs: 100 });
  smtp = await startSmtpServer({
    security: 'starttls',
    xoauth2: (_user, token) => idp.acceptsAccessToken(token),
    users: { 'password@campus.example': SMTP_PASSWORD },
  });
  importedRefreshToken = idp.issueRefreshToken(CLIENT_ID, 'delegated@campus.example');
  stack = await startStack({
    label: 'creds',
    smtpSenders: 2,
    env: { NODE_EXTRA_CA_CERTS: testCa().caFile, APP_CLIENT_SECRET: CLIENT_SECRET, DELEGATED_RT: importedRefreshToken },
    config: {
      clients: [clientEntry(app), clientEntry(ops)],
      senders: [
        oauthSender('app-only', { flow: 'client_credentials', tenant_id: 'tenant-app' }),
        oauthSender('burst', { flow: 'client_credentials', tenant_id: 'tenant-burst' }),
        oauthSender('delegated', { flow: 'refresh_token', tenant_id: 'tenant-delegated', refresh_token: 'env:DELEGATED_RT' }),
        oauthSender('consented', { flow: 'refresh_token', tenant_id: 'tenant-consent' }),
        {
          id: 'password',
          from: 'password@campus.example',
          transport: 'smtp',
          smtp: {
            host: '127.0.0.1',
            port: smtp.port,
            security: 'starttls',
            servername: 'localhost',
            ca_file: testCa().caFile,
            auth: { type: 'password', user: 'password@campus.example', password: SMTP_PASSWORD },
          },
        },
        {
          id: 'wrong-password',
          from: 'password@campus.example',
          transport: 'smtp',
          smtp: {
            host: '127.0.0.1',
            port: smtp.port,
            security: 'starttls',
            servername: 'localhost',
            ca_file: testCa().caFile,
            auth: { type: 'password', user: 'password@campus.example', password: 'not-the-password' },
          },
        },
      ],
      delivery: FAST_DELIVERY,
    },
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  // Access tokens, locks and consent states expire on their own; removed here to leave Redis clean.
  if (stack) {
    const redis = new Redis(stack.env.REDIS_URL!);
    const keys = await redis.keys(`${stack.prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  }
  const results = await stack?.stop();
  await Promise.all([smtp?.close(), idp?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

const requests = (tenant: string) => idp.tokenRequests.filter((r) => r.tenant === tenant);

// The shared test client has no BeginConsent yet; a small admin client of this file's own.
function beginConsent(sender: string): Promise<BeginConsentResponse> {
  const Ctor = makeGenericClientConstructor(toGrpcDefinition(AdminService), 'AdminService');
  const admin = new Ctor(stack.address, credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & { close(): void };
  const md = new Metadata();
  md.set('authorization', `Bearer ${ops.apiKey}`);
  return new Promise<BeginConsentResponse>((resolve, reject) =>
    admin.beginConsent!(
      create(BeginConsentRequestSchema, { sender }),
      md,
      { deadline: Date.now() + 10_000 },
      (err: ServiceError | null, res: BeginConsentResponse) => (err ? reject(err) : resolve(res)),
    ),
  ).finally(() => admin.close());
}

const stepsOf = (r: TestSenderResponse) => r.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`);

describe('OAuth2 credentials end to end', () => {
  it('delivers with an app-only (client credentials) token over XOAUTH2', async () => {
    const res = await client.sendMail({ sender: 'app-only', to: ['ada@students.campus.example'], subject: 'app-only', text: 'hello' });
    const mail = await waitForMail(smtp, res.messageId);
    expect(mail.user).toBe('app-only@campus.example');
    await waitForState(client, res.messageId, [MessageState.SENT]);
    expect(requests('tenant-app').map((r) => r.grantType)).toEqual(['client_credentials']);
    expect(requests('tenant-app')[0]!.scope).toContain('https://outlook.office365.com/.default');
  });

  it('delivers with a delegated token from an imported refresh token', async () => {
    const res = await client.sendMail({ sender: 'delegated', to: ['bob@students.campus.example'], subject: 'delegated', text: 'hello' });
    const mail = await waitForMail(smtp, res.messageId);
    expect(mail.user).toBe('delegated@campus.example');
    expect(requests('tenant-delegated').map((r) => r.grantType)).toEqual(['refresh_token']);
    expect(requests('tenant-delegated')[0]!.scope).toContain('https://outlook.office.com/SMTP.Send');
  });

  it('makes one token request for a burst of 20 messages over two sender replicas', async () => {
    const sent = await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.sendMail({ sender: 'burst', to: [`s${i}@students.campus.example`], subject: `burst ${i}`, text: 'x' })),
    );
    await Promise.all(sent.map((r) => waitForMail(smtp, r.messageId, 30_000)));
    expect(requests('tenant-burst')).toHaveLength(1);
  });

  it('retries a sender without consent, saying so, and delivers once consent is given', async () => {
    const res = await client.sendMail({ sender: 'consented', to: ['carol@students.campus.example'], subject: 'after consent', text: 'x' });
    const waiting = await waitForState(client, res.messageId, [MessageState.RETRYING]);
    expect(waiting.lastError).toMatch(/needs consent/);

    const { authorizeUrl } = await beginConsent('consented');
    const authorize = new URL(authorizeUrl);
    expect(`${authorize.origin}${authorize.pathname}`).toBe(`${idp.url}/tenant-consent/oauth2/v2.0/authorize`);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    const signedIn = await fetch(authorize, { redirect: 'manual' });
    expect(signedIn.status).toBe(302);
    // RELAY_PUBLIC_URL is the default here; ingest serves the callback on the port the stack chose
    // and relays it to credentials, which has no public port.
    const back = new URL(signedIn.headers.get('location')!);
    expect(stack.credentials.ports.http).toBeUndefined();
    const callback = `http://127.0.0.1:${stack.ingest.ports.http}${back.pathname}${back.search}`;
    const forged = await fetch(callback.replace(/state=[^&]+/, 'state=forged'));
    expect(forged.status).toBe(400);
    const done = await fetch(callback);
    expect(done.status).toBe(200);
    expect(await done.text()).toMatch(/authorized/);
    expect((await fetch(callback)).status).toBe(400);

    await waitForMail(smtp, res.messageId, 30_000);
  });

  it('GetSender shows who consented and when the token was refreshed, and no secret', async () => {
    const getSender = (id: string) => client.admin<GetSenderResponse>('getSender', create(GetSenderRequestSchema, { id }), { apiKey: ops.apiKey });
    const got = await getSender('consented');
    const c = got.credential!;
    expect(c.consentedBy).toBe('consented@campus.example');
    const consentedAt = timestampDate(c.consentedAt!).getTime();
    const refreshedAt = timestampDate(c.tokenRefreshedAt!).getTime();
    expect(Math.abs(Date.now() - consentedAt)).toBeLessThan(5 * 60_000);
    // The mail waiting for consent went out with a token obtained after it.
    expect(refreshedAt).toBeGreaterThanOrEqual(consentedAt);
    expect(timestampDate(c.tokenExpiresAt!).getTime()).toBeGreaterThan(refreshedAt);
    const text = toJsonString(GetSenderResponseSchema, got);
    for (const secret of [CLIENT_SECRET, ...idp.issuedRefreshTokens(), ...idp.issuedAccessTokens()]) expect(text).not.toContain(secret);

    // An imported refresh token was never consented to here; its token times are still shown.
    const imported = (await getSender('delegated')).credential!;
    expect(imported.consentedBy).toBe('');
    expect(imported.tokenRefreshedAt).toBeDefined();
    // A password sender has neither.
    const password = (await getSender('password')).credential!;
    expect([password.consentedBy, password.consentedAt, password.tokenRefreshedAt]).toEqual(['', undefined, undefined]);
  });

  it('tests a sender step by step (AdminService.TestSender), with a test message and a remedy on failure', async () => {
    const good = await client.testSender({ sender: 'app-only', to: 'it-ops@campus.example' }, { apiKey: ops.apiKey });
    expect(stepsOf(good)).toEqual(['token:ok', 'connect:ok', 'TLS:ok', 'auth:ok', 'send:ok']);
    expect(good.ok).toBe(true);
    expect(good.remedy).toBe('');
    expect(good.steps.find((s) => s.name === 'auth')!.detail).toMatch(/XOAUTH2/);
    expect(good.steps.find((s) => s.name === 'TLS')!.detail).toMatch(/STARTTLS TLSv1\.[23]/);
    expect(good.steps.find((s) => s.name === 'send')!.detail).toMatch(/^250/);
    expect(smtp.messages.some((m) => m.envelope.to.includes('it-ops@campus.example'))).toBe(true);

    const bad = await client.testSender({ sender: 'wrong-password' }, { apiKey: ops.apiKey });
    expect(bad.ok).toBe(false);
    expect(stepsOf(bad)).toEqual(['connect:ok', 'TLS:ok', 'auth:failed']);
    expect(bad.steps.at(-1)!.detail).toMatch(/server offers AUTH .*; 535/);
    expect(bad.remedy).toMatch(/user name or password/);
  });

  it('replaces a token the SMTP server rejects (token_rejected) and delivers', async () => {
    const before = requests('tenant-app').length;
    idp.revokeAccessTokens();
    // A pooled connection that authenticated before the revocation would go on sending (as a real
    // server lets it); cut them, so the next send has to authenticate with the revoked token.
    smtp.dropConnections();
    const rejectedBefore = smtp.authAttempts.filter((a) => a.method === 'XOAUTH2' && !a.accepted).length;
    const res = await client.sendMail({ sender: 'app-only', to: ['dave@students.campus.example'], subject: 'after revocation', text: 'x' });
    await waitForMail(smtp, res.messageId, 30_000);
    expect(smtp.authAttempts.filter((a) => a.method === 'XOAUTH2' && !a.accepted).length).toBeGreaterThan(rejectedBefore);
    expect(requests('tenant-app').length - before).toBe(1);
  });

  it('stores no secret in plaintext in JetStream or Redis', async () => {
    const secrets = [CLIENT_SECRET, SMTP_PASSWORD, ...idp.issuedRefreshTokens(), ...idp.issuedAccessTokens()];
    expect(idp.issuedAccessTokens().length).toBeGreaterThanOrEqual(4);
    const found: string[] = [];
    let sawSubject = false;
    const check = (where: string, data: Uint8Array | string) => {
      const text = typeof data === 'string' ? data : Buffer.from(data).toString('latin1');
      // Positive control: the scan does read message contents (status details are stored as they are).
      if (text.includes('needs consent')) sawSubject = true;
      for (const s of secrets) if (text.includes(s)) found.push(`${where} holds ${s.slice(0, 6)}…`);
    };

    const nc = await connect({ servers: stack.env.NATS_URL! });
    try {
      const jsm = await jetstreamManager(nc);
      const P = stack.prefix.toUpperCase().replace(/-/g, '_');
      let scanned = 0;
      for await (const si of jsm.streams.list()) {
        const name = si.config.name;
        if (!name.startsWith(P) && !name.includes(stack.prefix)) continue;
        for (let seq = si.state.first_seq; seq <= si.state.last_seq && si.state.messages > 0; seq++) {
          const m = await jsm.streams.getMessage(name, { seq }).catch(() => null);
          if (!m) continue;
          scanned++;
          check(`${name}#${seq} ${m.subject}`, m.data);
          check(`${name}#${seq} subject`, m.subject);
          if (m.header) for (const [k, v] of m.header) check(`${name}#${seq} header ${k}`, v.join(','));
        }
      }
      expect(scanned).toBeGreaterThan(20);
      expect(sawSubject).toBe(true);
      const secretsBucket = await jsm.streams.info(`KV_${stack.prefix}-secrets`);
      expect(secretsBucket.state.messages).toBeGreaterThanOrEqual(2);
    } finally {
      await nc.close();
    }

    const redis = new Redis(stack.env.REDIS_URL!);
    try {
      const keys = await redis.keys(`${stack.prefix}:*`);
      expect(keys).toContain(`${stack.prefix}:token:app-only`);
      for (const k of keys) {
        check(`redis key`, k);
        // Read each value as itself (DUMP compresses, which could hide a plaintext secret).
        const type = await redis.type(k);
        if (type === 'string') check(`redis ${k}`, (await redis.get(k)) ?? '');
        else if (type === 'hash') check(`redis ${k}`, JSON.stringify(await redis.hgetall(k)));
        else if (type === 'set') check(`redis ${k}`, JSON.stringify(await redis.smembers(k)));
        else if (type === 'zset') check(`redis ${k}`, JSON.stringify(await redis.zrange(k, '0', '-1')));
        else if (type === 'list') check(`redis ${k}`, JSON.stringify(await redis.lrange(k, 0, -1)));
        else if (type !== 'none') throw new Error(`redis ${k}: unexpected type ${type}; add it to this scan`);
      }
    } finally {
      await redis.quit();
    }
    expect(found).toEqual([]);
  });
});
