import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfig, type SenderConfig } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createExpiryMonitor, expiryStep } from './credential-expiry.js';
import { graphClientSecretEnd, readClientSecretEnd } from './graph-secret-end.js';
import type { CachedToken } from './token-cache.js';

const SECRET = 'Abc8Q~not-a-real-secret';
const requests: { url: string; auth: string | undefined }[] = [];
let status = 200;
let server: Server;
let graphUrl: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', auth: req.headers.authorization });
    if (status !== 200) {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'Authorization_RequestDenied', message: 'Insufficient privileges to complete the operation.' } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        passwordCredentials: [
          { hint: 'xyz', endDateTime: '2026-01-01T00:00:00Z', displayName: 'someone else' },
          { hint: 'Abc', endDateTime: '2027-09-01T10:00:00Z', displayName: 'relay' },
          { hint: 'Abc', endDateTime: '2027-06-30T10:00:00Z', displayName: 'relay, older' },
        ],
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  graphUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const jwt = (roles: string[]) => `h.${Buffer.from(JSON.stringify({ roles })).toString('base64url')}.s`;
const token = (roles: string[]): CachedToken => ({ accessToken: jwt(roles), expiresAt: Date.now() + 3_600_000, obtainedAt: Date.now() });
const sender = (extra = ''): SenderConfig =>
  parseConfig(
    `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]\nsenders:\n  - { id: registrar, from: r@campus.example, transport: graph, graph: { tenant_id: t, client_id: app-1, client_secret: "${SECRET}", mailbox: r@campus.example, graph_url: "${graphUrl}"${extra} } }\n`,
    {},
  ).senders[0]!;

describe('client secret end from Graph', () => {
  it("reads the app's passwordCredentials and takes the earliest end of those whose hint matches the secret", async () => {
    const end = await readClientSecretEnd({ graphUrl, clientId: 'app-1', secret: SECRET, accessToken: 't0k' });
    expect(end).toEqual(new Date('2027-06-30T10:00:00Z'));
    expect(requests.at(-1)).toEqual({ url: "/v1.0/applications(appId='app-1')?$select=passwordCredentials", auth: 'Bearer t0k' });
    expect(await readClientSecretEnd({ graphUrl, clientId: 'app-1', secret: 'nomatch', accessToken: 't0k' })).toBeUndefined();
    status = 403;
    try {
      await expect(readClientSecretEnd({ graphUrl, clientId: 'app-1', secret: SECRET, accessToken: 't0k' })).rejects.toThrow(/: 403 .*Insufficient privileges/);
    } finally {
      status = 200;
    }
  });

  it('asks only with a token the sender holds that may read applications', async () => {
    const before = requests.length;
    expect(await graphClientSecretEnd({ get: async () => undefined })(sender())).toBeUndefined();
    expect(await graphClientSecretEnd({ get: async () => token(['Mail.Send']) })(sender())).toEqual({ end: undefined });
    // A configured date wins: nothing to read.
    expect(await graphClientSecretEnd({ get: async () => token(['Application.Read.All']) })(sender(', client_secret_expires_at: 2028-01-01'))).toEqual({
      end: undefined,
    });
    expect(requests.length).toBe(before);
    expect(await graphClientSecretEnd({ get: async () => token(['Mail.Send', 'Application.Read.All']) })(sender())).toEqual({
      end: new Date('2027-06-30T10:00:00Z'),
    });
    expect(requests.length).toBe(before + 1);
  });

  it('feeds the expiry monitor: gauge, warning and TestSender step, read again a day later', async () => {
    const s = sender();
    let now = Date.parse('2027-06-20T10:00:00Z');
    let held: CachedToken | undefined;
    const m = createExpiryMonitor({
      senders: () => [s],
      facts: async () => ({}),
      logger: createLogger({ service: 'test', level: 'silent' }),
      now: () => now,
      readSecretEnd: graphClientSecretEnd({ get: async () => held }),
    });
    await m.check();
    // No token yet: nothing known, asked again at the next check.
    expect(m.expiries()).toEqual([]);
    held = token(['Application.Read.All']);
    const before = requests.length;
    await m.check();
    expect(m.expiries()).toEqual([{ sender: 'registrar', kind: 'client_secret', expiresAt: new Date('2027-06-30T10:00:00Z') }]);
    expect(expiryStep(s, {}, now, m.secretEndFromGraph('registrar'))!.step).toMatchObject({ ok: true, warning: true });
    await m.check();
    expect(requests.length).toBe(before + 1);
    now += 86_400_000;
    await m.check();
    expect(requests.length).toBe(before + 2);
  });
});
