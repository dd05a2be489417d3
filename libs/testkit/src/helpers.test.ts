import { readFileSync, statSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { requireBinary, runsWith } from './binaries.js';
import { masterKey, randomApiKey, writeConfig } from './config.js';
import { freePort } from './net.js';
import { packageDir, repoRoot, serviceScript } from './paths.js';
import { testCa } from './tls.js';

describe('testCa', () => {
  const ca = testCa();

  it('points at absolute files holding the same PEM it returns', () => {
    for (const [file, pem] of [
      [ca.caFile, ca.caPem],
      [ca.certFile, ca.certPem],
      [ca.keyFile, ca.keyPem],
      [ca.untrusted.certFile, ca.untrusted.certPem],
      [ca.untrusted.keyFile, ca.untrusted.keyPem],
    ] as const) {
      expect(isAbsolute(file)).toBe(true);
      expect(readFileSync(file, 'utf8')).toBe(pem);
    }
  });

  it('has a server certificate for localhost, 127.0.0.1 and smtp.test.local, issued by the CA for decades', () => {
    const caCert = new X509Certificate(ca.caPem);
    const server = new X509Certificate(ca.certPem);
    expect(caCert.subject).toBe('CN=Campus Relay Test CA');
    expect(caCert.ca).toBe(true);
    expect(server.verify(caCert.publicKey)).toBe(true);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkHost('smtp.test.local')).toBe('smtp.test.local');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(new Date(server.validTo).getFullYear()).toBeGreaterThanOrEqual(2055);
    expect(new X509Certificate(ca.untrusted.certPem).verify(caCert.publicKey)).toBe(false);
  });

  it('completes a TLS handshake for each name when the client trusts the CA, and not for the untrusted certificate', async () => {
    const handshake = async (pair: { certPem: string; keyPem: string }, servername: string) => {
      const server = createServer({ cert: pair.certPem, key: pair.keyPem }, (s) => s.end());
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      try {
        return await new Promise<string>((resolve) => {
          const s: TLSSocket = connect({ host: '127.0.0.1', port, ca: ca.caPem, ...(servername === '127.0.0.1' ? {} : { servername }) });
          s.once('secureConnect', () => {
            s.destroy();
            resolve('ok');
          });
          s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        });
      } finally {
        await new Promise((r) => server.close(r));
      }
    };
    for (const name of ['localhost', 'smtp.test.local', '127.0.0.1']) expect(await handshake(ca, name)).toBe('ok');
    expect(await handshake(ca, 'other.example')).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(await handshake(ca.untrusted, 'localhost')).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });
});

describe('paths', () => {
  it('finds the repository root and where a service is built', () => {
    expect(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).name).toBe('campus-relay');
    expect(statSync(join(packageDir, 'certs', 'ca.pem')).isFile()).toBe(true);
    expect(serviceScript('ingest')).toBe(join(repoRoot, 'services', 'ingest', 'dist', 'main.js'));
  });
});

describe('writeConfig and secrets', () => {
  it('writes YAML that reads back as the object, each time into a fresh directory', () => {
    const config = { clients: [{ name: 'billing-app', api_key: 'env:BILLING_API_KEY', senders: ['no-reply'] }], senders: [] };
    const a = writeConfig(config);
    const b = writeConfig(config);
    expect(a).not.toBe(b);
    expect(a.endsWith('relay.yaml')).toBe(true);
    expect(parse(readFileSync(a, 'utf8'))).toEqual(config);
  });

  it('writes a string as it is', () => {
    expect(readFileSync(writeConfig('clients: [oops', 'bad.yaml'), 'utf8')).toBe('clients: [oops');
  });

  it('makes unique API keys and 32-byte base64 master keys', () => {
    expect(randomApiKey()).not.toBe(randomApiKey());
    expect(randomApiKey()).toMatch(/^rk_test_[A-Za-z0-9_-]{32}$/);
    const key = masterKey();
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    expect(Buffer.from(key, 'base64').toString('base64')).toBe(key);
  });
});

describe('freePort', () => {
  it('returns a port that can be bound on 127.0.0.1', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = createNetServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((r) => server.close(r));
  });
});

describe('runsWith / requireBinary', () => {
  it('runs a suite when its program is installed, and in CI even when it is not', () => {
    expect(runsWith(process.execPath, {})).toBe(true);
    expect(runsWith('/nonexistent/relay-test-binary', {})).toBe(false);
    expect(runsWith(undefined, {})).toBe(false);
    expect(runsWith('/nonexistent/relay-test-binary', { CI: 'true' })).toBe(true);
  });

  it('fails naming the missing program and how to install it', () => {
    expect(requireBinary(process.execPath, 'x')).toBe(process.execPath);
    expect(() => requireBinary('/nonexistent/swaks', 'apt-get install swaks')).toThrow('/nonexistent/swaks is missing: apt-get install swaks');
  });
});
