/**
 * The stack's throwaway internal CA: mutual TLS between credentials and the services that call it,
 * with certificates made afresh on every run (nothing to keep, nothing to leak from an old run).
 */
// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API first.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import type { ServiceName } from '@relay/core';

type Env = Record<string, string | undefined>;
/** The library's WebCrypto parameter type, which Node's webcrypto implements. */
type X509Crypto = NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;
type KeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const LIFETIME_MS = 7 * 86_400_000;
/** Services that call credentials, each with a client certificate of its own. */
const CLIENTS = ['ingest', 'smtp-sender', 'graph-sender'] as const;

export interface InternalTls {
  dir: string;
  /** RELAY_INTERNAL_CA / _CERT / _KEY for one service; nothing for the scheduler. */
  envFor(name: ServiceName): Env;
  /** The name credentials' certificate carries, to reach it by (TLS names no IP addresses). */
  host: string;
}

/** Makes a CA, a server certificate for credentials (localhost, 127.0.0.1) and a client certificate per caller, as PEM files under `dir`. */
export async function createInternalTls(dir: string): Promise<InternalTls> {
  const crypto = webcrypto as unknown as X509Crypto;
  const subtle = webcrypto.subtle;
  const notBefore = new Date(Date.now() - 3_600_000);
  const notAfter = new Date(Date.now() + LIFETIME_MS);
  const caKeys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: 'CN=Campus Relay stack internal CA',
      notBefore,
      notAfter,
      signingAlgorithm: ALG,
      keys: caKeys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const leaf = async (cn: string, usage: x509.ExtendedKeyUsage, names: x509.JsonGeneralName[]) => {
    const keys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        subject: `CN=${cn}`,
        issuer: ca.subject,
        notBefore,
        notAfter,
        signingAlgorithm: ALG,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([usage]),
          ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
          await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
        ],
      },
      crypto,
    );
    const key = x509.PemConverter.encode(await subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    return { cert: cert.toString('pem'), key };
  };

  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const write = (name: string, pem: string) => {
    const path = join(dir, name);
    writeFileSync(path, `${pem}\n`, { mode: 0o600 });
    return path;
  };
  const caFile = write('ca.pem', ca.toString('pem'));
  const files = new Map<ServiceName, { cert: string; key: string }>();
  const server = await leaf('relay-credentials', x509.ExtendedKeyUsage.serverAuth, [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
  ]);
  files.set('credentials', { cert: write('credentials.pem', server.cert), key: write('credentials-key.pem', server.key) });
  for (const name of CLIENTS) {
    const client = await leaf(`relay-${name}`, x509.ExtendedKeyUsage.clientAuth, []);
    files.set(name, { cert: write(`${name}.pem`, client.cert), key: write(`${name}-key.pem`, client.key) });
  }
  return {
    dir,
    envFor(name) {
      const f = files.get(name);
      return f ? { RELAY_INTERNAL_CA: caFile, RELAY_INTERNAL_CERT: f.cert, RELAY_INTERNAL_KEY: f.key } : {};
    },
    host: 'localhost',
  };
}

function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

/** Internal authentication for a stack: a throwaway CA, or a random token should making one fail. */
export async function stackInternalAuth(dir: string, warn: (line: string) => void): Promise<{ tls?: InternalTls; token?: string }> {
  try {
    return { tls: await createInternalTls(dir) };
  } catch (err) {
    warn(`stack: no internal CA (${(err as Error).message}); the services authenticate to credentials with a random token instead`);
    return { token: randomBytes(32).toString('base64url') };
  }
}
