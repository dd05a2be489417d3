import { createServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { freePort, testCa, testRedisUrl, uniquePrefix } from '@relay/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGraphClient, type GraphClient } from './graph-client.js';
import { createMailboxSlots } from './mailbox-slots.js';

/** A failure as last_error shows it: the message, then its remedy. */
const lastError = (e: { message: string; remedy?: string }) => (e.remedy ? `${e.message} — ${e.remedy}` : e.message);

// A request to Graph that gets no HTTP answer names the host, the cause and the remedy.

let redis: Redis;
let client: GraphClient;
const prefix = uniquePrefix('graph-unreachable');
const target = { sender: 'registrar', mailbox: 'registrar@campus.example', maxConcurrent: 4 };

beforeAll(() => {
  redis = new Redis(testRedisUrl());
  client = createGraphClient({
    tokens: { get: async () => 'token' },
    slots: createMailboxSlots(redis, prefix, { pollMs: 5 }),
    timing: { requestTimeoutMs: 2_000 },
  });
});
afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
});

const failure = (url: string) =>
  client.call(target, { method: 'POST', url, body: '{}', bearer: true }).then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as Error & { retryable: boolean; remedy?: string },
  );

describe('Microsoft Graph unreachable', () => {
  it('DNS: names the host that does not resolve', async () => {
    const e = await failure('https://graph.nowhere.invalid/v1.0/users/registrar%40campus.example/sendMail');
    expect(e.retryable).toBe(true);
    expect(lastError(e)).toMatch(
      /^cannot reach Microsoft Graph at graph\.nowhere\.invalid: DNS lookup failed \((ENOTFOUND|EAI_AGAIN)\) — check that the relay's DNS resolves graph\.nowhere\.invalid$/,
    );
    expect(e.remedy).toBe("check that the relay's DNS resolves graph.nowhere.invalid");
  });

  it('refused: names the port to allow', async () => {
    const port = await freePort();
    const e = await failure(`https://127.0.0.1:${port}/v1.0/users/registrar%40campus.example/sendMail`);
    expect(lastError(e)).toBe(
      `cannot reach Microsoft Graph at 127.0.0.1:${port}: connection refused — allow outbound TCP ${port} from the relay to 127.0.0.1 (firewall, proxy)`,
    );
  });

  it('TLS: names a handshake that fails', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.end('not tls\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const e = await failure(`https://127.0.0.1:${port}/v1.0/users/registrar%40campus.example/sendMail`);
      expect(lastError(e)).toMatch(
        new RegExp(`^cannot reach Microsoft Graph at 127\\.0\\.0\\.1:${port}: TLS failed \\(.+\\) — the relay does not trust 127\\.0\\.0\\.1's certificate`),
      );
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('TLS: says in words why the certificate is refused', async () => {
    const server = createTlsServer({ cert: testCa().untrusted.certPem, key: testCa().untrusted.keyPem }, (s) => s.end());
    server.on('tlsClientError', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const e = await failure(`https://127.0.0.1:${port}/v1.0/users/registrar%40campus.example/sendMail`);
      expect(lastError(e)).toBe(
        `cannot reach Microsoft Graph at 127.0.0.1:${port}: TLS failed: the certificate for localhost, 127.0.0.1 is self-signed, and the relay does not trust it — if a proxy between the relay and 127.0.0.1 inspects TLS, give the relay that proxy's CA (NODE_EXTRA_CA_CERTS)`,
      );
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
