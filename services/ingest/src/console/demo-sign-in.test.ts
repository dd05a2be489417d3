import { randomBytes } from 'node:crypto';
import { parseConfig } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import { afterEach, describe, expect, it } from 'vitest';
import { startPublicHttp, type PublicHttp } from '../public-http.js';
import { roleOf } from './api.js';
import { createConsoleRoutes, DEMO_LINK_TTL_MS } from './console-http.js';
import { createSigner } from './session.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const CONFIG_TEXT = `clients: [{ name: app, api_key: app-key-0123456789abcdef0123456789, senders: [s] }]
senders: [{ id: s, from: s@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2525, security: none } }]
`;
const config = parseConfig(CONFIG_TEXT, {});
const servers: PublicHttp[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(token: string | undefined, clock: { now: number }) {
  const calls: string[] = [];
  const ended = new Set<string>();
  const http = await startPublicHttp({
    port: 0,
    host: '127.0.0.1',
    ready: async () => true,
    logger,
    completeConsent: async () => ({ status: 400, message: 'x' }),
    routes: [
      createConsoleRoutes({
        config: () => config,
        api: {
          call: async (s, role, name) => {
            calls.push(`${s.email}:${role.kind}:${name}`);
            return {};
          },
        },
        signer: createSigner(randomBytes(32), () => clock.now),
        // Sign-outs in memory: console.test.ts covers them across replicas.
        signOuts: {
          revoked: (s) => ended.has(s.sid),
          revoke: async (id) => void ended.add(id),
          revokePerson: async () => {},
          issuedAt: () => clock.now,
          lifetime: async (ms) => ms,
        },
        publicUrl: 'http://localhost:8080',
        secure: false,
        oidc: () => undefined,
        demoToken: token,
        logger,
        now: () => clock.now,
      }),
    ],
  });
  servers.push(http);
  return { base: `http://127.0.0.1:${http.port}`, calls };
}

describe('roles', () => {
  it('makes the demo sign-in an admin only while relay.yaml has no console:', () => {
    const demo = { email: 'demo@localhost', name: 'Demo', groups: [], demo: true, sid: 's', iat: 0, csrf: 'c', exp: 0 };
    expect(roleOf(demo, config)).toEqual({ kind: 'admin' });
    const withConsole = parseConfig(`console: { issuer: "https://idp.campus.example", client_id: c, admins: [a@campus.example] }\n${CONFIG_TEXT}`, {});
    expect(roleOf(demo, withConsole)).toEqual({ kind: 'none' });
    expect(roleOf({ ...demo, demo: false, email: 'A@campus.example' }, withConsole)).toEqual({ kind: 'admin' });
  });
});

describe('the demo sign-in link', () => {
  const token = randomBytes(24).toString('base64url');

  it('signs in once as the demo admin, from this machine', async () => {
    const clock = { now: Date.now() };
    const { base, calls } = await start(token, clock);
    expect(await (await fetch(`${base}/api/session`)).json()).toMatchObject({ signedIn: false, demo: true });
    expect((await fetch(`${base}/auth/demo?token=${'x'.repeat(token.length)}`)).status).toBe(403);
    const first = await fetch(`${base}/auth/demo?token=${token}`);
    expect(first.status).toBe(200);
    const cookie = first.headers.getSetCookie()[0]!.split(';')[0]!;
    const session = (await (await fetch(`${base}/api/session`, { headers: { cookie } })).json()) as { role: string; csrf: string };
    expect(session.role).toBe('admin');
    const res = await fetch(`${base}/api/ListSenders`, {
      method: 'POST',
      headers: { cookie, 'x-csrf-token': session.csrf, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(200);
    expect(calls).toEqual(['demo@localhost:admin:ListSenders']);
    // Single use: the same link again is refused.
    expect((await fetch(`${base}/auth/demo?token=${token}`)).status).toBe(403);
    // The session expires with its lifetime.
    clock.now += 9 * 3_600_000;
    expect((await (await fetch(`${base}/api/session`, { headers: { cookie } })).json()) as object).toMatchObject({ signedIn: false });
  });

  it('expires unused', async () => {
    const clock = { now: Date.now() };
    const { base } = await start(token, clock);
    clock.now += DEMO_LINK_TTL_MS + 1;
    expect((await fetch(`${base}/auth/demo?token=${token}`)).status).toBe(403);
  });

  it('does not exist without a token', async () => {
    const { base } = await start(undefined, { now: Date.now() });
    expect((await fetch(`${base}/auth/demo?token=`)).status).toBe(403);
    expect(await (await fetch(`${base}/api/session`)).json()).toMatchObject({ signedIn: false, demo: false });
  });
});
