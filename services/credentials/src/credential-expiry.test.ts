import { Writable } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { parseConfig, type SenderConfig } from '@relay/config';
import { TestSenderResponseSchema, TestStepSchema } from '@relay/proto';
import { createLogger, type RelayInstruments } from '@relay/telemetry';
import { makeAppCertificate, testRedisUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createExpiryMonitor,
  expiryLevel,
  expiryStep,
  refreshTokenAuth,
  registerCredentialExpiryGauge,
  senderExpiries,
  withExpiryStep,
  type ExpiryMonitorDeps,
} from './credential-expiry.js';
import type { CredentialFacts } from './credential-status.js';

const DAY = 86_400_000;
/** The day the client secret and the certificate run out in these tests. */
const END = Date.parse('2027-06-30T00:00:00Z');
const cert = makeAppCertificate({ notAfter: new Date(END + 10 * DAY) });
afterAll(() => cert.remove());

const senders: SenderConfig[] = parseConfig(
  `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]
senders:
  - { id: graph-secret, from: g@campus.example, transport: graph, graph: { tenant_id: t, client_id: app-1, client_secret: x, client_secret_expires_at: 2027-06-30, mailbox: g@campus.example } }
  - { id: graph-cert, from: c@campus.example, transport: graph, graph: { tenant_id: t, client_id: app-2, mailbox: c@campus.example, client_certificate: { certificate_file: "${cert.certFile}", private_key_file: "${cert.keyFile}" } } }
  - { id: graph-plain, from: p@campus.example, transport: graph, graph: { tenant_id: t, client_id: app-3, client_secret: x, mailbox: p@campus.example } }
  - { id: delegated, from: d@campus.example, transport: smtp, smtp: { host: smtp.office365.com, port: 587, security: starttls, auth: { type: oauth2, provider: microsoft, tenant_id: t, client_id: app-4, client_secret: y, client_secret_expires_at: "2028-01-01T00:00:00Z", user: d@campus.example } } }
  - { id: gmail, from: m@campus.example, transport: smtp, smtp: { host: smtp.gmail.com, port: 587, security: starttls, auth: { type: oauth2, provider: google, client_id: app-5, client_secret: z, user: m@campus.example } } }
  - { id: password, from: w@campus.example, transport: smtp, smtp: { host: smtp.office365.com, port: 587, security: starttls, auth: { type: password, user: w@campus.example, password: p } } }
`,
  {},
).senders;
const byId = (id: string) => senders.find((s) => s.id === id)!;

/** The delegated sender's token was last refreshed here, so its refresh token lapses 90 days later. */
const REFRESHED = END - 60 * DAY;
const facts: Record<string, CredentialFacts> = {
  delegated: { consentedBy: 'd@campus.example', consentedAt: new Date(REFRESHED - 5 * DAY).toISOString(), tokenRefreshedAt: new Date(REFRESHED).toISOString() },
  gmail: { consentedAt: new Date(REFRESHED).toISOString() },
};

interface Line {
  level: number;
  msg: string;
  sender?: string;
  kind?: string;
  expires_at?: string;
  remedy?: string;
}

function capture(): { logger: ReturnType<typeof createLogger>; lines: Line[] } {
  const lines: Line[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Line);
      done();
    },
  });
  return { logger: createLogger({ service: 'test', level: 'info', destination }), lines };
}

function monitor(now: () => number, extra: Partial<ExpiryMonitorDeps> = {}) {
  const { logger, lines } = capture();
  const m = createExpiryMonitor({ senders: () => senders, facts: async (id) => facts[id] ?? {}, logger, now, ...extra });
  return { m, lines };
}

describe('credential expiry', () => {
  it('knows each kind: certificate notAfter, configured client secret, refresh token 90 (Google: 183) days after its last use', () => {
    expect(senderExpiries(byId('graph-secret'))).toEqual([{ sender: 'graph-secret', kind: 'client_secret', expiresAt: new Date(END) }]);
    expect(senderExpiries(byId('graph-cert'))).toEqual([{ sender: 'graph-cert', kind: 'certificate', expiresAt: new Date(END + 10 * DAY) }]);
    expect(senderExpiries(byId('graph-plain'))).toEqual([]);
    expect(senderExpiries(byId('password'))).toEqual([]);
    // A refresh_token sender with nothing known yet: only its client secret.
    expect(senderExpiries(byId('delegated')).map((e) => e.kind)).toEqual(['client_secret']);
    expect(senderExpiries(byId('delegated'), facts.delegated)).toContainEqual({
      sender: 'delegated',
      kind: 'refresh_token',
      expiresAt: new Date(REFRESHED + 90 * DAY),
      lastUsedAt: new Date(REFRESHED),
    });
    // Never refreshed: counted from the consent.
    expect(senderExpiries(byId('gmail'), facts.gmail)).toEqual([
      { sender: 'gmail', kind: 'refresh_token', expiresAt: new Date(REFRESHED + 183 * DAY), lastUsedAt: new Date(REFRESHED) },
    ]);
  });

  it("counts a delegated Graph sender's refresh token too, and keeps it alive with Graph's delegated scopes", () => {
    const [graphDelegated] = parseConfig(
      `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]
senders:
  - { id: dept, from: d@campus.example, transport: graph, graph: { flow: refresh_token, tenant_id: t, client_id: app-6, client_secret: x, mailbox: d@campus.example } }
`,
      {},
    ).senders;
    expect(senderExpiries(graphDelegated!, facts.delegated)).toContainEqual({
      sender: 'dept',
      kind: 'refresh_token',
      expiresAt: new Date(REFRESHED + 90 * DAY),
      lastUsedAt: new Date(REFRESHED),
    });
    expect(refreshTokenAuth(graphDelegated!)?.scopes).toEqual(['https://graph.microsoft.com/Mail.Send', 'offline_access']);
    // App-only Graph senders have no refresh token to lapse.
    expect(refreshTokenAuth(byId('graph-secret'))).toBeUndefined();
  });

  it('reports relay_credential_expiry_seconds{sender,kind} for every known expiry, at the time of collection', async () => {
    let now = END - 20 * DAY;
    const { m } = monitor(() => now);
    await m.check();
    const callbacks: ((r: { observe(v: number, a: Record<string, string>): void }) => void)[] = [];
    let name = '';
    const meter = {
      createObservableGauge: (n: string) => {
        name = n;
        return { addCallback: (cb: (typeof callbacks)[number]) => callbacks.push(cb), removeCallback: () => callbacks.pop() };
      },
    } as unknown as RelayInstruments['meter'];
    const unregister = registerCredentialExpiryGauge(
      meter,
      () => m.expiries(),
      () => now,
    );
    const collect = () => {
      const seen: Record<string, number> = {};
      callbacks[0]!({ observe: (v, a) => (seen[`${a.sender}/${a.kind}`] = v) });
      return seen;
    };
    expect(name).toBe('relay_credential_expiry_seconds');
    expect(collect()).toEqual({
      'graph-secret/client_secret': 20 * 86_400,
      'graph-cert/certificate': 30 * 86_400,
      'delegated/client_secret': (Date.parse('2028-01-01T00:00:00Z') - now) / 1000,
      'delegated/refresh_token': 50 * 86_400,
      'gmail/refresh_token': 143 * 86_400,
    });
    now = END + DAY;
    expect(collect()['graph-secret/client_secret']).toBe(-86_400);
    // A token obtained restarts the refresh token's clock at once.
    m.note('delegated', { tokenRefreshedAt: new Date(now).toISOString() });
    expect(collect()['delegated/refresh_token']).toBe(90 * 86_400);
    unregister();
    expect(callbacks).toHaveLength(0);
  });

  it('logs a warning at 30, 14 and 3 days and an error once expired, each once, naming sender, kind, date and remedy', async () => {
    let now = END - 40 * DAY;
    const only = [byId('graph-secret')];
    const { m, lines } = monitor(() => now, { senders: () => only });
    const at = async (t: number) => {
      now = t;
      await m.check();
      return lines.splice(0).map((l) => `${l.level === 50 ? 'error' : 'warn'} ${l.msg}`);
    };
    expect(await at(END - 40 * DAY)).toEqual([]);
    const first = await at(END - 30 * DAY);
    expect(first).toEqual(['warn credential expires within 30 days: sender "graph-secret": client secret expires 2027-06-30 (in 30 days)']);
    expect(await at(END - 29 * DAY)).toEqual([]);
    expect(await at(END - 14 * DAY + 60_000)).toEqual([
      'warn credential expires within 14 days: sender "graph-secret": client secret expires 2027-06-30 (in 13 days)',
    ]);
    expect(await at(END - 10 * DAY)).toEqual([]);
    expect(await at(END - 3 * DAY)).toEqual(['warn credential expires within 3 days: sender "graph-secret": client secret expires 2027-06-30 (in 3 days)']);
    expect(await at(END - DAY)).toEqual([]);
    expect(await at(END + 1000)).toEqual(['error credential expired: sender "graph-secret": client secret expired 2027-06-30 (1 hour ago)']);
    expect(await at(END + 5 * DAY)).toEqual([]);
  });

  it('puts the fields and the remedy on the line, starts at the tightest threshold, and starts over for a renewed credential', async () => {
    let now = END - 2 * DAY;
    let list = [byId('graph-secret'), byId('delegated')];
    const { m, lines } = monitor(() => now, { senders: () => list });
    await m.check();
    // Already within 3 days at start: one line, not three.
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, sender: 'graph-secret', kind: 'client_secret', expires_at: '2027-06-30T00:00:00.000Z' });
    expect(lines[0]!.remedy).toMatch(
      /^Add a new client secret in Entra ID → App registrations → the app \(client id app-1\) → Certificates & secrets → New client secret, then give it to sender "graph-secret" with relay senders set-secret graph-secret graph\.client_secret/,
    );
    lines.length = 0;
    // The refresh token of the delegated sender lapses 90 days after REFRESHED (END + 30 days).
    now = REFRESHED + 80 * DAY;
    await m.check();
    expect(lines.map((l) => [l.sender, l.kind, l.level])).toEqual([
      ['graph-secret', 'client_secret', 50],
      ['delegated', 'refresh_token', 40],
    ]);
    expect(lines[1]!.msg).toBe(
      'credential expires within 14 days: sender "delegated": refresh token last used 2027-05-01, lapses if unused 2027-07-30 (in 10 days)',
    );
    expect(lines[1]!.remedy).toMatch(
      /^Press "Authenticate with MFA" on sender "delegated"'s page in the console \(or run relay senders consent delegated\) and sign in as d@campus\.example/,
    );
    lines.length = 0;
    // The secret renewed (a new date) and expiring in its turn: warned again.
    const renewed = parseConfig(
      `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]\nsenders:\n  - { id: graph-secret, from: g@campus.example, transport: graph, graph: { tenant_id: t, client_id: app-1, client_secret: x, client_secret_expires_at: 2027-08-01, mailbox: g@campus.example } }\n`,
      {},
    ).senders[0]!;
    list = [renewed];
    await m.check();
    expect(lines.map((l) => l.msg)).toEqual(['credential expires within 14 days: sender "graph-secret": client secret expires 2027-08-01 (in 12 days)']);
  });

  it('gives TestSender a "credential expiry" step: ok with the dates, a warning within 30 days, failed once expired', () => {
    expect(expiryLevel(new Date(END), END - 31 * DAY)).toBe('ok');
    expect(expiryLevel(new Date(END), END - 30 * DAY)).toBe(30);
    expect(expiryLevel(new Date(END), END - 3 * DAY)).toBe(3);
    expect(expiryLevel(new Date(END), END)).toBe('expired');

    const far = expiryStep(byId('graph-secret'), {}, END - 200 * DAY)!;
    expect(far.step).toMatchObject({ name: 'credential expiry', ok: true, warning: false, detail: 'client secret expires 2027-06-30 (in 200 days)' });
    expect(far.remedy).toBe('');

    const soon = expiryStep(byId('graph-secret'), {}, END - 14 * DAY)!;
    expect(soon.step).toMatchObject({ ok: true, warning: true });
    expect(soon.step.detail).toMatch(/^client secret expires 2027-06-30 \(in 14 days\)\. Add a new client secret in Entra ID → App registrations/);

    const delegated = expiryStep(byId('delegated'), facts.delegated!, REFRESHED + 88 * DAY)!;
    expect(delegated.step).toMatchObject({ ok: true, warning: true });
    expect(delegated.step.detail).toMatch(
      /^client secret expires 2028-01-01 \(in \d+ days\); refresh token last used 2027-05-01, lapses if unused 2027-07-30 \(in 2 days\); consented by d@campus\.example 2027-04-26 \(93 days ago\)\. Press "Authenticate with MFA"/,
    );

    const expired = expiryStep(byId('graph-secret'), {}, END + DAY)!;
    expect(expired.step).toMatchObject({ ok: false, warning: false });
    expect(expired.step.detail).toMatch(/^client secret expired 2027-06-30 \(1 day ago\)\. Add a new client secret/);

    // Nothing known to expire: no step.
    expect(expiryStep(byId('graph-plain'), {}, END)).toBeUndefined();
    expect(expiryStep(byId('password'), {}, END)).toBeUndefined();
  });

  it('puts the step first; an expired credential fails the test with its remedy first', () => {
    const passed = create(TestSenderResponseSchema, { ok: true, steps: [create(TestStepSchema, { name: 'token', ok: true, detail: 't' })] });
    const warned = withExpiryStep(passed, expiryStep(byId('graph-secret'), {}, END - 3 * DAY));
    expect(warned.ok).toBe(true);
    expect(warned.steps.map((s) => [s.name, s.ok, s.warning])).toEqual([
      ['credential expiry', true, true],
      ['token', true, false],
    ]);
    expect(warned.remedy).toBe('');

    const refused = create(TestSenderResponseSchema, {
      ok: false,
      steps: [create(TestStepSchema, { name: 'token', ok: false, detail: 'AADSTS7000222: The provided client secret keys are expired' })],
      remedy: 'Check client_id and client_secret.',
    });
    const failed = withExpiryStep(refused, expiryStep(byId('graph-secret'), {}, END + DAY));
    expect(failed.ok).toBe(false);
    expect(failed.remedy).toMatch(/^Add a new client secret in Entra ID .* Check client_id and client_secret\.$/);
    expect(withExpiryStep(passed, undefined)).toBe(passed);
  });
});

describe('refresh token keep-alive', () => {
  const redis = new Redis(testRedisUrl());
  const prefix = uniquePrefix('keepalive');
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });
  const claim = async (sender: string, ttlMs: number) => (await redis.set(`${prefix}:token-keepalive:${sender}`, '1', 'PX', ttlMs, 'NX')) === 'OK';

  it('refreshes a token idle for longer than RELAY_TOKEN_KEEP_ALIVE once across two replicas, and not a fresh one', async () => {
    const now = REFRESHED + 31 * DAY;
    // delegated: last refreshed 31 days ago (idle); gmail: refreshed yesterday (fresh).
    const state: Record<string, CredentialFacts> = {
      delegated: { ...facts.delegated },
      gmail: { tokenRefreshedAt: new Date(now - DAY).toISOString() },
    };
    const refreshed: string[] = [];
    const replica = () =>
      createExpiryMonitor({
        senders: () => senders,
        facts: async (id) => state[id] ?? {},
        logger: capture().logger,
        now: () => now,
        keepAlive: {
          afterMs: 30 * DAY,
          claim,
          refresh: async (sender) => {
            refreshed.push(sender);
            state[sender] = { ...state[sender], tokenRefreshedAt: new Date(now).toISOString() };
          },
        },
      });
    const [a, b] = [replica(), replica()];
    await Promise.all([a.check(), b.check()]);
    expect(refreshed).toEqual(['delegated']);
    // Refreshed: the next checks leave it alone, on either replica.
    await Promise.all([a.check(), b.check()]);
    expect(refreshed).toEqual(['delegated']);
    // Off without keepAlive.
    const off = createExpiryMonitor({ senders: () => senders, facts: async () => ({ ...facts.delegated }), logger: capture().logger, now: () => now });
    await off.check();
    expect(refreshed).toEqual(['delegated']);
  });

  it('logs a failed keep-alive refresh and carries on', async () => {
    const { logger, lines } = capture();
    const m = createExpiryMonitor({
      senders: () => [byId('delegated')],
      facts: async () => ({ ...facts.delegated }),
      logger,
      now: () => REFRESHED + 40 * DAY,
      keepAlive: {
        afterMs: 30 * DAY,
        claim: async () => true,
        refresh: () => Promise.reject(new Error('sender "delegated" needs consent')),
      },
    });
    await m.check();
    expect(lines.find((l) => l.msg === 'keep-alive refresh failed')).toMatchObject({ level: 40, sender: 'delegated' });
  });
});
