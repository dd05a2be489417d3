/**
 * Issue 17.2: secrets only in credentials. The services are started as `npm run stack` starts
 * them (its env handling, its supervisor); an attacker who owns ingest, the scheduler or a sender
 * reads that process's environment and finds neither an SMTP password nor the master key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createTestClient,
  dropBus,
  envelopeKey,
  FAST_DELIVERY,
  masterKey,
  randomApiKey,
  repoRoot,
  smtpSender,
  startSmtpServer,
  testNatsUrl,
  testRedisUrl,
  type TestSmtpServer,
  uniquePrefix,
  waitForMail,
  writeConfig,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSupervisor, type ReadyChild } from '../tools/src/stack/children.js';
import { createInternalTls } from '../tools/src/stack/internal-ca.js';
import { secretEnvNames, stackChildEnv } from '../tools/src/stack/service-scope.js';
import { ENVELOPE_KEY_HOLDERS } from '../tools/src/stack/nats.js';
import { SERVICE_NAMES, type ServiceName } from '@relay/core';
import { credentialsAddress, serviceArgs, type StackSettings } from '../tools/src/stack/services.js';

const PASSWORD = `smtp-pw-${randomBytes(12).toString('hex')}`;
const API_KEY = randomApiKey();
const OPS_KEY = randomApiKey();
const MASTER_KEY = masterKey();
const UNRELATED = `cloud-${randomBytes(12).toString('hex')}`;
const prefix = uniquePrefix('scope');
const supervisor = createSupervisor({ print: () => {}, graceMs: 10_000 });
const started = new Map<ServiceName, ReadyChild>();
let smtp: TestSmtpServer;
const tlsDir = mkdtempSync(join(tmpdir(), 'relay-internal-tls-'));

/** What /proc says the process was started with. */
function environOf(pid: number): Record<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

beforeAll(async () => {
  smtp = await startSmtpServer({ users: { 'no-reply@campus.example': PASSWORD } });
  const configPath = writeConfig({
    clients: [
      { name: 'app', api_key: 'env:SCOPE_APP_API_KEY', senders: ['no-reply'] },
      { name: 'ops', api_key: 'env:SCOPE_OPS_KEY', senders: [], admin: true },
    ],
    senders: [smtpSender({ id: 'no-reply', server: smtp, security: 'none', auth: { user: 'no-reply@campus.example', password: 'env:SCOPE_SMTP_PASSWORD' } })],
    delivery: FAST_DELIVERY,
  });
  // The operator's shell: the config's secrets, the master key and something unrelated.
  const shell = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    RELAY_BUS_PREFIX: prefix,
    RELAY_SHUTDOWN_GRACE: '5s',
    SCOPE_APP_API_KEY: API_KEY,
    SCOPE_OPS_KEY: OPS_KEY,
    SCOPE_SMTP_PASSWORD: PASSWORD,
    AWS_SECRET_ACCESS_KEY: UNRELATED,
  };
  const settings: StackSettings = {
    natsUrl: testNatsUrl(),
    redisUrl: testRedisUrl(),
    configPath,
    masterKey: MASTER_KEY,
    ports: { grpc: 0, http: 0, credentials: 0 },
    credentialsAddr: '',
    host: '127.0.0.1',
  };
  const secrets = secretEnvNames(configPath);
  // The stack's default: mutual TLS toward credentials with a CA made for this run.
  const tls = await createInternalTls(tlsDir);
  // As `npm run stack` adds it: only ingest (signs) and the senders (check) hold the envelope key.
  const envelope = envelopeKey();
  const childEnv = (name: ServiceName) => ({
    ...stackChildEnv(name, shell, settings, secrets, tls),
    ...(ENVELOPE_KEY_HOLDERS.includes(name) ? { RELAY_ENVELOPE_KEY: envelope } : {}),
  });
  const spec = (name: ServiceName) => ({ name, command: process.execPath, args: serviceArgs(repoRoot, name), env: childEnv(name), cwd: repoRoot });
  const credentials = await supervisor.start(spec('credentials'));
  started.set('credentials', credentials);
  settings.credentialsAddr = credentialsAddress(0, credentials.ports, tls.host);
  const others = await Promise.all(SERVICE_NAMES.filter((s) => s !== 'credentials').map((s) => supervisor.start(spec(s))));
  for (const c of others) started.set(c.name as ServiceName, c);
}, 60_000);

afterAll(async () => {
  await supervisor.stop(SERVICE_NAMES.filter((s) => s !== 'credentials'));
  await supervisor.stop();
  await smtp?.close();
  await dropBus(prefix).catch(() => {});
  rmSync(tlsDir, { recursive: true, force: true });
});

describe('npm run stack hands each service only the environment it needs', () => {
  it.each(['ingest', 'scheduler', 'smtp-sender', 'graph-sender'] as const)('%s has no SMTP password, master key or unrelated secret', (name) => {
    const environ = environOf(started.get(name)!.pid);
    const values = Object.values(environ);
    expect(values).not.toContain(PASSWORD);
    expect(values).not.toContain(MASTER_KEY);
    expect(values).not.toContain(UNRELATED);
    expect(environ.RELAY_MASTER_KEY).toBeUndefined();
    // Ingest checks callers' keys; nothing else needs them.
    expect(values.includes(API_KEY)).toBe(name === 'ingest');
    // Each caller of credentials has a client certificate of its own; the scheduler never calls it.
    if (name === 'scheduler') expect(Object.keys(environ).filter((k) => k.startsWith('RELAY_INTERNAL_'))).toEqual([]);
    else expect(environ.RELAY_INTERNAL_KEY).toBe(join(tlsDir, `${name}-key.pem`));
  });

  it('credentials, and only it, holds the password and the master key; not the API keys', () => {
    const environ = environOf(started.get('credentials')!.pid);
    expect(environ.SCOPE_SMTP_PASSWORD).toBe(PASSWORD);
    expect(environ.RELAY_MASTER_KEY).toBe(MASTER_KEY);
    expect(Object.values(environ)).not.toContain(API_KEY);
  });

  it('mail still goes out: the sender gets the password from credentials when it sends', async () => {
    const client = createTestClient(`127.0.0.1:${started.get('ingest')!.ports.grpc}`, API_KEY);
    try {
      const res = await client.sendMail({ sender: 'no-reply', to: ['someone@example.org'], subject: 'scoped', text: 'hello' });
      await waitForMail(smtp, res.messageId);
      expect(smtp.authAttempts.some((a) => a.username === 'no-reply@campus.example' && a.accepted)).toBe(true);
    } finally {
      client.close();
    }
  });

  it("ingest's admin calls reach credentials with ingest's own certificate", async () => {
    const client = createTestClient(`127.0.0.1:${started.get('ingest')!.ports.grpc}`, OPS_KEY);
    try {
      const res = await client.testSender({ sender: 'no-reply' });
      expect(res.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`)).toContain('auth:ok');
    } finally {
      client.close();
    }
  });
});
