import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@relay/core';
import { diagnoseHttps } from '@relay/mail';
import { fetchToken, type TokenAuth } from './token-providers.js';

const app = (authorityUrl: string): TokenAuth => ({
  type: 'oauth2',
  provider: 'microsoft',
  flow: 'client_credentials',
  tenantId: 'campus',
  clientId: 'app',
  clientSecret: { reveal: () => 'secret', resolved: true } as never,
  user: 'relay@campus.example',
  refreshToken: undefined,
  authorityUrl,
  tokenUrl: undefined,
});

describe('an unreachable identity platform', () => {
  it('names the host, the cause and the remedy: DNS', async () => {
    const err = await fetchToken('library', app('https://login.nonexistent.invalid'), undefined).then(
      () => undefined,
      (e: unknown) => e as Error & { code: string },
    );
    if (!err) throw new Error('expected a failure');
    expect(err.code).toBe(ErrorCode.Unavailable);
    expect(err.message).toMatch(
      /^sender "library": cannot reach the identity platform at login\.nonexistent\.invalid: DNS lookup failed \((ENOTFOUND|EAI_AGAIN)\); check that the relay's DNS resolves login\.nonexistent\.invalid$/,
    );
  });

  it('names a refused connection with the port to allow', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const err = await fetchToken('library', app(`https://127.0.0.1:${port}`), undefined).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    if (!err) throw new Error('expected a failure');
    expect(err.message).toBe(
      `sender "library": cannot reach the identity platform at 127.0.0.1:${port}: connection refused; allow outbound TCP ${port} from the relay to 127.0.0.1 (firewall, proxy)`,
    );
  });

  it('names a TLS failure, and finds nothing wrong where all three steps work', async () => {
    // Plain TCP that answers nothing TLS can use.
    const sockets = new Set<import('node:net').Socket>();
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {}); // the probe resets it
      s.end('not tls\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const broken = await diagnoseHttps(`https://127.0.0.1:${port}/token`);
      expect(broken?.cause).toMatch(/^TLS failed \(/);
      expect(broken?.remedy).toContain('NODE_EXTRA_CA_CERTS');
      expect(await diagnoseHttps(`http://127.0.0.1:${port}/`)).toBeUndefined();
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
