import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { connectBus, type Bus } from '@relay/bus';
import { parseConfig, readEnv } from '@relay/config';
import type { RunnableService } from '@relay/core';
import { createCredentialsClient } from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { dropBus, startIdentityFake, testCa, testNatsUrl, testRedisUrl, uniquePrefix, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCredentialStatus } from './credential-status.js';
import { createCredentials } from './credentials.js';

// The credentials service with its clock moved 80 days ahead: the expiry checks at start log the
// warnings, refresh an idle refresh token (RELAY_TOKEN_KEEP_ALIVE) and TestSender reports them.

const DAY = 86_400_000;
const SHIFT = 80 * DAY;
const now = () => Date.now() + SHIFT;
const adminToken = randomBytes(32).toString('base64url');
const internalToken = randomBytes(32).toString('base64url');
const lines: { level: number; msg: string; sender?: string; kind?: string }[] = [];
const logger = createLogger({
  service: 'test',
  level: 'info',
  destination: new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  }),
});

let idp: IdentityFake;
let bus: Bus;
let prefix: string;
let service: RunnableService;
let address: string;
const secretEnd = new Date(now() + 10 * DAY + 3_600_000);

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  idp = await startIdentityFake({ clients: { 'app-idle': 's1', 'app-fresh': 's2', 'app-graph': 's3' } });
  prefix = uniquePrefix('expiry');
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'expiry-test' });
  const status = await openCredentialStatus(bus);
  // Real time: 80 days before the service's moved clock. "fresh" was refreshed a day before it.
  await status.tokenObtained('idle', new Date(), new Date(Date.now() + 3_600_000));
  await status.tokenObtained('fresh', new Date(now() - DAY), new Date(now() - DAY + 3_600_000));
  const delegated = (id: string, clientId: string, secret: string) =>
    `  - { id: ${id}, from: ${id}@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2525, security: none, auth: { type: oauth2, provider: microsoft, tenant_id: t, client_id: ${clientId}, client_secret: ${secret}, user: ${id}@campus.example, authority_url: "${idp.url}", refresh_token: ${idp.issueRefreshToken(clientId, `${id}@campus.example`)} } } }\n`;
  const config = parseConfig(
    `clients: [{ name: app, api_key: k-${randomBytes(16).toString('hex')} }]
senders:
${delegated('idle', 'app-idle', 's1')}${delegated('fresh', 'app-fresh', 's2')}  - { id: graph, from: g@campus.example, transport: graph, graph: { tenant_id: t, client_id: app-graph, client_secret: s3, client_secret_expires_at: "${secretEnd.toISOString()}", mailbox: g@campus.example, authority_url: "${idp.url}" } }
`,
    {},
  );
  const env = readEnv({
    NATS_URL: testNatsUrl(),
    REDIS_URL: testRedisUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_MASTER_KEY: randomBytes(32).toString('base64'),
    RELAY_CREDENTIALS_PORT: '0',
    RELAY_INTERNAL_TOKEN: internalToken,
    RELAY_INTERNAL_ADMIN_TOKEN: adminToken,
    RELAY_TOKEN_KEEP_ALIVE: '30d',
  });
  service = await createCredentials({ env, config, logger }, { bus, now });
  address = `127.0.0.1:${(await service.start()).grpc}`;
}, 30_000);

afterAll(async () => {
  await service?.stop();
  await bus?.close();
  await dropBus(prefix);
  await idp?.close();
});

async function until<T>(get: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('credential expiry in the credentials service', () => {
  it('warns at start about the client secret and the idle refresh token, and keeps the idle one alive', async () => {
    const secret = await until(() => lines.find((l) => l.sender === 'graph' && l.kind === 'client_secret'));
    expect(secret).toMatchObject({ level: 40, msg: expect.stringMatching(/^credential expires within 14 days: sender "graph": client secret expires /) });
    const idle = await until(() => lines.find((l) => l.sender === 'idle' && l.kind === 'refresh_token'));
    expect(idle).toMatchObject({
      level: 40,
      msg: expect.stringMatching(/^credential expires within 14 days: sender "idle": refresh token last used .*\(in 10 days\)$/),
    });
    await until(() => lines.find((l) => l.sender === 'idle' && l.msg === 'refreshed an idle refresh token (keep-alive)'));
    expect(idp.tokenRequests.filter((r) => r.clientId === 'app-idle').map((r) => r.grantType)).toEqual(['refresh_token']);
    // Refreshed a day ago (by the moved clock): neither warned nor refreshed.
    expect(idp.tokenRequests.filter((r) => r.clientId === 'app-fresh')).toEqual([]);
    expect(lines.filter((l) => l.sender === 'fresh' && l.kind)).toEqual([]);
  });

  it('TestSender starts with a "credential expiry" step in the warning state', async () => {
    const client = createCredentialsClient(address, { kind: 'token', token: adminToken });
    try {
      const res = await client.testSender({ sender: 'graph' }, 30_000);
      expect(res.steps[0]).toMatchObject({ name: 'credential expiry', ok: true, warning: true });
      expect(res.steps[0]!.detail).toMatch(
        /^client secret expires .* \(in 10 days\)\. Add a new client secret in Entra ID → App registrations → the app \(client id app-graph\)/,
      );
      expect(lines.find((l) => l.msg === 'sender tested')).toMatchObject({ steps: expect.arrayContaining(['credential expiry:warning']) });
    } finally {
      client.close();
    }
  });

  it('logs a refused token request with the sender and the reason', async () => {
    const client = createCredentialsClient(address, { kind: 'token', token: internalToken });
    try {
      await expect(client.getSmtpAuth({ sender: 'nope' })).rejects.toThrow(/not configured/);
      expect(await until(() => lines.find((l) => l.msg.startsWith('credentials refused')))).toMatchObject({
        level: 40,
        sender: 'nope',
        msg: 'credentials refused: sender "nope" is not configured',
      });
    } finally {
      client.close();
    }
  });
});
