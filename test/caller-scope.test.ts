import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { get } from 'node:https';
import { MessageState } from '@relay/proto';
import {
  clientEntry,
  codeOf,
  createTestClient,
  dropBus,
  masterKey,
  newClient,
  type ServiceProcess,
  serviceTestEnv,
  smtpSender,
  spawnService,
  status,
  testCa,
  type TestClient,
  testNatsUrl,
  uniquePrefix,
  writeConfig,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Two clients that share a sender, and an admin client.
const alice = newClient('alice-app', ['shared']);
const bob = newClient('bob-app', ['shared']);
const ops = newClient('it-ops', [], true);
const prefix = uniquePrefix('scope');
let ingest: ServiceProcess;
const clients: TestClient[] = [];

function client(apiKey: string): TestClient {
  const c = createTestClient(`127.0.0.1:${ingest.ports.grpc}`, apiKey, { caPem: testCa().caPem });
  clients.push(c);
  return c;
}

/** Local address of a listening IPv4 TCP socket on `port`, from /proc/net/tcp (e.g. "127.0.0.1"). */
function listeningAddress(port: number): string | undefined {
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const [, local, , state] = line.trim().split(/\s+/);
    if (state !== '0A' || !local) continue;
    const [hexIp, hexPort] = local.split(':');
    if (Number.parseInt(hexPort!, 16) !== port) continue;
    return Buffer.from(hexIp!, 'hex').reverse().join('.');
  }
  return undefined;
}

beforeAll(async () => {
  const config = {
    clients: [clientEntry(alice), clientEntry(bob), clientEntry(ops)],
    senders: [smtpSender({ id: 'shared', server: { port: 2 }, security: 'none' })],
  };
  ingest = await spawnService('ingest', {
    env: {
      RELAY_CONFIG: writeConfig(config),
      NATS_URL: testNatsUrl(),
      RELAY_BUS_PREFIX: prefix,
      RELAY_GRPC_PORT: '0',
      RELAY_HTTP_PORT: '0',
      RELAY_METRICS_PORT: '0',
      RELAY_HOST: '0.0.0.0',
      RELAY_TLS_CERT: testCa().certFile,
      RELAY_TLS_KEY: testCa().keyFile,
      ...serviceTestEnv('ingest'),
    },
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  const exit = await ingest?.stop('SIGTERM', 20_000);
  await dropBus(prefix);
  expect(exit).toEqual({ code: 0, signal: null });
});

describe('TLS and listening addresses', () => {
  it('serves gRPC over TLS from RELAY_TLS_CERT / RELAY_TLS_KEY and refuses plaintext', async () => {
    const plain = createTestClient(`127.0.0.1:${ingest.ports.grpc}`, alice.apiKey);
    clients.push(plain);
    expect((await codeOf(plain.getMessage(randomUUID(), { deadlineMs: 3_000 }))).code).toBe(status.UNAVAILABLE);
    expect((await codeOf(client(alice.apiKey).getMessage(randomUUID()))).code).toBe(status.NOT_FOUND);
  });

  it('keeps the metrics port on loopback while the public port listens on RELAY_HOST', () => {
    expect(listeningAddress(ingest.ports.grpc!)).toBe('0.0.0.0');
    expect(listeningAddress(ingest.ports.metrics!)).toBe('127.0.0.1');
  });

  it('serves the public HTTP port over TLS on RELAY_HTTP_PORT, on RELAY_HOST', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      get({ host: '127.0.0.1', port: ingest.ports.http, path: '/healthz', ca: testCa().caPem, servername: 'localhost' }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
    expect(body.trim()).toBe('ok');
    expect(listeningAddress(ingest.ports.http!)).toBe('0.0.0.0');
  });

  it('gives credentials no public port: its internal gRPC and ops ports stay on loopback', async () => {
    const credentials = await spawnService('credentials', {
      env: {
        RELAY_CONFIG: writeConfig({ clients: [clientEntry(alice)], senders: [smtpSender({ id: 'shared', server: { port: 2 }, security: 'none' })] }),
        NATS_URL: testNatsUrl(),
        RELAY_BUS_PREFIX: prefix,
        RELAY_MASTER_KEY: masterKey(),
        RELAY_CREDENTIALS_PORT: '0',
        RELAY_HTTP_PORT: '0',
        RELAY_METRICS_PORT: '0',
        RELAY_HOST: '0.0.0.0',
        RELAY_TLS_CERT: testCa().certFile,
        RELAY_TLS_KEY: testCa().keyFile,
        ...serviceTestEnv('credentials'),
      },
    });
    try {
      expect(credentials.ports.http).toBeUndefined();
      expect(Object.keys(credentials.ports).sort()).toEqual(['grpc', 'metrics']);
      expect(listeningAddress(credentials.ports.grpc!)).toBe('127.0.0.1');
      expect(listeningAddress(credentials.ports.metrics!)).toBe('127.0.0.1');
    } finally {
      expect(await credentials.stop('SIGTERM', 20_000)).toEqual({ code: 0, signal: null });
    }
  });
});

describe('reads are scoped to the calling client', () => {
  it("another client of the same sender gets NOT_FOUND for a message's history; its own client and admins see it", async () => {
    const sent = await client(alice.apiKey).sendMail({
      sender: 'shared',
      to: ['a@campus.example'],
      bcc: ['secret-bcc@campus.example'],
      subject: 'private',
      text: 'x',
    });
    const denied = await codeOf(client(bob.apiKey).getMessage(sent.messageId));
    expect(denied.code).toBe(status.NOT_FOUND);
    expect(denied.details).not.toMatch(/secret-bcc/);
    expect((await client(alice.apiKey).getMessage(sent.messageId)).state).toBe(MessageState.QUEUED);
    expect((await client(ops.apiKey).getMessage(sent.messageId)).messageId).toBe(sent.messageId);
    expect((await codeOf(client(bob.apiKey).getMessage(randomUUID()))).code).toBe(status.NOT_FOUND);
  });
});

describe('headers a caller may not set', () => {
  it('refuses trust headers and control characters with INVALID_ARGUMENT naming the field', async () => {
    const base = { sender: 'shared', to: ['a@campus.example'], subject: 'headers', text: 'x' };
    const received = await codeOf(client(alice.apiKey).sendMail({ ...base, headers: { Received: 'from trusted.campus.example' } }));
    expect(received).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^headers\["Received"\]/) });
    const auth = await codeOf(client(alice.apiKey).sendMail({ ...base, headers: { 'Authentication-Results': 'campus.example; dkim=pass' } }));
    expect(auth).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^headers\["Authentication-Results"\]/) });
    const attachment = { filename: 'a.txt', contentType: 'text/plain\r\nBcc: victim@elsewhere.example', content: new Uint8Array(1) };
    const ct = await codeOf(client(alice.apiKey).sendMail({ ...base, attachments: [attachment] }));
    expect(ct).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^attachments\[0\]\.content_type/) });
    expect((await client(alice.apiKey).sendMail({ ...base, headers: { 'X-Ticket': '1', 'List-Unsubscribe': '<mailto:u@campus.example>' } })).state).toBe(
      MessageState.QUEUED,
    );
  });
});
