import { randomBytes } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { parseConfig, readEnv, type RelayConfig, type RelayEnv } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import {
  clientEntry,
  dropBus,
  eventually,
  newClient,
  serviceTestEnv,
  startIdentityFake,
  testCa,
  testNatsUrl,
  uniquePrefix,
  type IdentityFake,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createIngest } from '../ingest.js';
import { CLOCK_ALLOWANCE_MS } from './revocations.js';

/** ingest in this process with `console:` pointing at the fake identity provider. */
const prefix = uniquePrefix('console');
const PUBLIC = 'http://localhost:8080';
const ops = newClient('ops', [], true);
let idp: IdentityFake;
let ingest: Awaited<ReturnType<typeof createIngest>>;
let base: string;
let env: RelayEnv;
let config: RelayConfig;
const logger = createLogger({ service: 'test', level: 'silent' });

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({ clients: { 'console-app': 'console-secret' }, groups: { 'gina@campus.example': ['g-other', 'g-admins'] } });
  env = readEnv({
    NATS_URL: testNatsUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_GRPC_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_METRICS_PORT: '0',
    RELAY_HOST: '127.0.0.1',
    RELAY_PUBLIC_URL: PUBLIC,
    // The same cookie key on every replica, as in production.
    RELAY_CONSOLE_SESSION_KEY: randomBytes(32).toString('base64'),
    ...serviceTestEnv('ingest'),
  });
  const sender = (id: string, owners?: string[]) => ({
    id,
    from: `${id}@campus.example`,
    ...(owners ? { owners } : {}),
    transport: 'smtp',
    smtp: { host: '127.0.0.1', port: 2525, security: 'none' },
  });
  config = parseConfig(
    stringify({
      console: {
        issuer: `${idp.url}/t1/v2.0`,
        client_id: 'console-app',
        client_secret: 'env:CONSOLE_SECRET',
        admins: ['Ada@campus.example'],
        admin_groups: ['g-admins'],
        contact: 'it-help@campus.example',
        session_ttl: '2h',
      },
      clients: [clientEntry(ops)],
      senders: [sender('a', ['olive@campus.example']), sender('b')],
    }),
    { CONSOLE_SECRET: 'console-secret' },
  );
  ingest = await createIngest({ env, config, logger });
  const ports = await ingest.start();
  base = `http://127.0.0.1:${ports.http}`;
});

afterAll(async () => {
  await ingest?.stop();
  await idp?.close();
  await dropBus(prefix);
});

const cookieOf = (res: Response) =>
  res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0]!)
    .filter((c) => !c.endsWith('='))
    .join('; ');

/** Signs in at the fake as `account`; returns the session cookie and the CSRF token. */
async function signIn(account: string): Promise<{ cookie: string; csrf: string; session: Record<string, unknown>; setCookie: string }> {
  const login = await fetch(`${base}/auth/login`, { redirect: 'manual' });
  expect(login.status).toBe(302);
  const pending = cookieOf(login);
  expect(login.headers.getSetCookie()[0]).toMatch(/HttpOnly; SameSite=Lax/);
  const authorize = new URL(login.headers.get('location')!);
  expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
  expect(authorize.searchParams.get('nonce')).toBeTruthy();
  idp.signInAs(account);
  const back = await fetch(authorize, { redirect: 'manual' }).finally(() => idp.signInAs(undefined));
  const redirect = new URL(back.headers.get('location')!);
  expect(`${redirect.origin}${redirect.pathname}`).toBe(`${PUBLIC}/auth/callback`);
  const done = await fetch(`${base}/auth/callback${redirect.search}`, { headers: { cookie: pending }, redirect: 'manual' });
  expect(done.status).toBe(200);
  expect(await done.text()).toContain('http-equiv="refresh"');
  const setCookie = done.headers.getSetCookie().find((c) => c.startsWith('relay_session='))!;
  expect(setCookie).toMatch(/HttpOnly; SameSite=Strict/);
  const cookie = setCookie.split(';')[0]!;
  const session = (await (await fetch(`${base}/api/session`, { headers: { cookie } })).json()) as Record<string, unknown>;
  return { cookie, csrf: String(session.csrf), session, setCookie };
}

async function api(who: { cookie: string; csrf: string }, name: string, body: unknown = {}, headers: Record<string, string> = {}, at = base) {
  const res = await fetch(`${at}/api/${name}`, {
    method: 'POST',
    headers: { cookie: who.cookie, 'x-csrf-token': who.csrf, 'content-type': 'application/json', origin: PUBLIC, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { senders?: Array<{ id: string }>; error?: string } };
}

describe('console sign-in and roles', () => {
  it('signs an admin in over OpenID Connect and lets them call AdminService as themselves', async () => {
    const ada = await signIn('ada@campus.example');
    expect(ada.session).toMatchObject({ signedIn: true, email: 'ada@campus.example', role: 'admin' });
    const list = await api(ada, 'ListSenders');
    expect(list.status).toBe(200);
    expect(list.body.senders!.map((s) => s.id)).toEqual(['a', 'b']);
    const put = await api(ada, 'PutSender', {
      sender: { id: 'c', spec: { from: 'c@campus.example', transport: 'smtp', smtp: { host: '127.0.0.1', port: 2525, security: 'none' } } },
    });
    expect(put.status).toBe(200);
    const got = await api(ada, 'GetSender', { id: 'c' });
    expect(got.body).toMatchObject({ sender: { id: 'c', updatedBy: 'ada@campus.example (console)' } });
    // The API's own field messages come back with the status.
    const bad = await api(ada, 'PutSender', { sender: { id: 'd', spec: { from: 'nope', transport: 'smtp' } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/from/);
    expect((await api(ada, 'ListClients')).status).toBe(200);
  });

  it('makes an admin of a member of an admin group', async () => {
    const gina = await signIn('gina@campus.example');
    expect(gina.session).toMatchObject({ role: 'admin' });
  });

  it('shows an owner only their senders and refuses the rest', async () => {
    const olive = await signIn('olive@campus.example');
    expect(olive.session).toMatchObject({ role: 'owner', senders: ['a'] });
    expect((await api(olive, 'ListSenders')).body.senders!.map((s) => s.id)).toEqual(['a']);
    expect((await api(olive, 'GetSender', { id: 'a' })).status).toBe(200);
    const other = await api(olive, 'GetSender', { id: 'b' });
    expect(other.status).toBe(403);
    expect(other.body.error).toBe('id: sender "b" is not one of yours');
    expect((await api(olive, 'ListClients')).status).toBe(403);
    expect((await api(olive, 'DeleteSender', { id: 'a' })).status).toBe(403);
    expect((await api(olive, 'ListMessages', {})).status).toBe(403);
    expect((await api(olive, 'ListMessages', { sender: 'a' })).status).toBe(200);
    const steal = await api(olive, 'PutSender', { sender: { id: 'a', owners: ['mallory@campus.example'], spec: {} } });
    expect(steal.status).toBe(403);
    expect(steal.body.error).toMatch(/only an admin changes who owns/);
  });

  it('tells someone without a role whom to ask, and gives them nothing', async () => {
    const zed = await signIn('zed@campus.example');
    expect(zed.session).toMatchObject({ signedIn: true, role: 'none', contact: 'it-help@campus.example' });
    expect((await api(zed, 'ListSenders')).status).toBe(403);
  });
});

describe('console sign-out', () => {
  /** Another ingest replica: same relay, same cookie key. */
  async function replica(): Promise<{ base: string; stop: () => Promise<void> }> {
    const other = await createIngest({ env, config, logger });
    const ports = await other.start();
    return { base: `http://127.0.0.1:${ports.http}`, stop: () => other.stop() };
  }
  const signOut = (who: { cookie: string; csrf: string }, at = base) =>
    fetch(`${at}/auth/logout`, { method: 'POST', headers: { cookie: who.cookie, 'x-csrf-token': who.csrf, origin: PUBLIC } });
  const signedIn = async (who: { cookie: string }, at = base) =>
    ((await (await fetch(`${at}/api/session`, { headers: { cookie: who.cookie } })).json()) as { signedIn: boolean }).signedIn;

  it('refuses the cookie after sign-out, on this replica and on every other (401)', async () => {
    const running = await replica();
    try {
      const ada = await signIn('ada@campus.example');
      const kept = await signIn('ada@campus.example');
      // One cookie key: the other replica takes the cookie as it is.
      expect((await api(ada, 'ListSenders', {}, {}, running.base)).status).toBe(200);
      const out = await signOut(ada);
      expect(out.status).toBe(200);
      expect(out.headers.getSetCookie()[0]).toMatch(/^relay_session=; .*Max-Age=0/);
      // A copy of the cookie, sent again after the sign-out.
      expect((await api(ada, 'ListSenders')).status).toBe(401);
      expect(await signedIn(ada)).toBe(false);
      await eventually(async () => ((await api(ada, 'ListSenders', {}, {}, running.base)).status === 401 ? true : undefined), 5_000);
      expect(await signedIn(ada, running.base)).toBe(false);
      // A replica started afterwards knows it too.
      const later = await replica();
      try {
        expect((await api(ada, 'ListSenders', {}, {}, later.base)).status).toBe(401);
        // The person's other sign-in is not ended by it.
        expect((await api(kept, 'ListSenders', {}, {}, later.base)).status).toBe(200);
      } finally {
        await later.stop();
      }
      // Signing out on the other replica ends it here too.
      expect((await signOut(kept, running.base)).status).toBe(200);
      await eventually(async () => ((await api(kept, 'ListSenders')).status === 401 ? true : undefined), 5_000);
    } finally {
      await running.stop();
    }
  });

  it('signs a person out everywhere: themselves, or anyone by an admin; a new sign-in works', async () => {
    const running = await replica();
    try {
      const everywhere = (who: { cookie: string; csrf: string }, body?: object, at = base) =>
        fetch(`${at}/auth/logout-everywhere`, {
          method: 'POST',
          headers: { cookie: who.cookie, 'x-csrf-token': who.csrf, origin: PUBLIC, 'content-type': 'application/json' },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
      // One after another: the identity provider double signs in one account at a time.
      const ada1 = await signIn('ada@campus.example');
      const ada2 = await signIn('ada@campus.example');
      const olive = await signIn('olive@campus.example');
      const gina = await signIn('gina@campus.example');
      // An owner signs out only themselves.
      const refused = await everywhere(olive, { email: 'ada@campus.example' });
      expect(refused.status).toBe(403);
      expect((await everywhere(gina, { email: 'not an address' })).status).toBe(400);
      // An admin (gina) signs olive out everywhere, on the other replica.
      expect(await (await everywhere(gina, { email: 'Olive@campus.example' }, running.base)).json()).toEqual({ signedOut: 'Olive@campus.example' });
      await eventually(async () => ((await api(olive, 'ListSenders', {})).status === 401 ? true : undefined), 5_000);
      expect((await api(gina, 'ListSenders')).status).toBe(200);
      // Ada ends both her sign-ins at once, and her cookie is cleared.
      const out = await everywhere(ada1);
      expect(out.status).toBe(200);
      expect(out.headers.getSetCookie()[0]).toMatch(/^relay_session=; .*Max-Age=0/);
      for (const who of [ada1, ada2]) {
        expect((await api(who, 'ListSenders')).status).toBe(401);
        await eventually(async () => ((await api(who, 'ListSenders', {}, {}, running.base)).status === 401 ? true : undefined), 5_000);
      }
      // Signing in again afterwards works, on either replica.
      const again = await signIn('ada@campus.example');
      expect((await api(again, 'ListSenders')).status).toBe(200);
      expect((await api(again, 'ListSenders', {}, {}, running.base)).status).toBe(200);
    } finally {
      await running.stop();
    }
  });

  it('keeps sign-outs in a bucket whose max_age is the sign-in lifetime (plus a clock allowance)', async () => {
    const info = await ingest.ctx.bus.jsm.streams.info(`KV_${prefix}-console-revoked`);
    expect(info.config.max_age).toBe((2 * 3_600_000 + CLOCK_ALLOWANCE_MS) * 1e6);
    // The cookie lasts the sign-in lifetime, so a sign-out is kept as long as the cookie it ends.
    expect((await signIn('ada@campus.example')).setCookie).toMatch(/Max-Age=7200\b/);
  });
});

describe('console request checks', () => {
  it('refuses a change without the CSRF token or from another origin, and reads without a session', async () => {
    const ada = await signIn('ada@campus.example');
    expect((await api({ ...ada, csrf: 'x'.repeat(ada.csrf.length) }, 'ListSenders')).status).toBe(403);
    expect((await api(ada, 'ListSenders', {}, { origin: 'https://evil.example' })).status).toBe(403);
    expect((await api(ada, 'ListSenders', {}, { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await fetch(`${base}/api/ListSenders`, { headers: { cookie: ada.cookie } })).status).toBe(405);
    expect((await api({ cookie: '', csrf: ada.csrf }, 'ListSenders')).status).toBe(401);
    // A session cookie someone edited is no session.
    const [name, value] = ada.cookie.split('=') as [string, string];
    const payload = JSON.parse(Buffer.from(value.split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${Buffer.from(JSON.stringify({ ...payload, email: 'x@campus.example' })).toString('base64url')}.${value.split('.')[1]}`;
    expect((await api({ cookie: `${name}=${forged}`, csrf: ada.csrf }, 'ListSenders')).status).toBe(401);
    expect((await api(ada, 'NoSuchCall')).status).toBe(404);
    expect((await api(ada, 'ListSenders', 'x'.repeat(70 * 1024))).status).toBe(400);
  });

  it('refuses a callback without the sign-in cookie, and a replayed code', async () => {
    const login = await fetch(`${base}/auth/login`, { redirect: 'manual' });
    const back = await fetch(login.headers.get('location')!, { redirect: 'manual' });
    const search = new URL(back.headers.get('location')!).search;
    expect((await fetch(`${base}/auth/callback${search}`)).status).toBe(400);
    // Without the cookie nothing was redeemed: with it, the code works once.
    const ok = await fetch(`${base}/auth/callback${search}`, { headers: { cookie: cookieOf(login) } });
    expect(ok.status).toBe(200);
    const replay = await fetch(`${base}/auth/callback${search}`, { headers: { cookie: cookieOf(login) } });
    expect(replay.status).toBe(400);
    expect(await replay.text()).toMatch(/not accepted/);
  });

  it('has no demo sign-in when console: is configured', async () => {
    expect((await fetch(`${base}/auth/demo?token=${'t'.repeat(40)}`)).status).toBe(403);
  });
});
