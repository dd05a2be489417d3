import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageDir } from './paths.js';

/** A certificate with its private key, PEM encoded. */
export interface CertPair {
  certPem: string;
  keyPem: string;
}

export interface TestCa extends CertPair {
  /** The "Campus Relay Test CA" certificate; trust it to accept `certPem`. */
  caPem: string;
  caFile: string;
  /** Signed by the CA for DNS:localhost, IP:127.0.0.1 and DNS:smtp.test.local. */
  certFile: string;
  keyFile: string;
  /** Self-signed for localhost and 127.0.0.1, trusted by nobody: for certificate-error tests. */
  untrusted: CertPair & { certFile: string; keyFile: string };
}

/** The committed test certificates (see certs/generate.sh), valid until 2056. */
export const certsDir = join(packageDir, 'certs');

let cached: TestCa | undefined;

export function testCa(): TestCa {
  if (cached) return cached;
  const file = (name: string) => join(certsDir, name);
  const read = (name: string) => readFileSync(file(name), 'utf8');
  cached = {
    caPem: read('ca.pem'),
    certPem: read('server.pem'),
    keyPem: read('server-key.pem'),
    caFile: file('ca.pem'),
    certFile: file('server.pem'),
    keyFile: file('server-key.pem'),
    untrusted: {
      certPem: read('untrusted.pem'),
      keyPem: read('untrusted-key.pem'),
      certFile: file('untrusted.pem'),
      keyFile: file('untrusted-key.pem'),
    },
  };
  return cached;
}

/** Files for internal mutual TLS (certs/generate-internal.sh): RELAY_INTERNAL_CA / _CERT / _KEY values. */
export interface InternalTlsFiles {
  ca: string;
  /** The credentials service's certificate (DNS:localhost, IP:127.0.0.1, DNS:credentials) and key. */
  server: { cert: string; key: string };
  /** A client certificate from the same CA, named relay-smtp-sender (its calls only). */
  client: { cert: string; key: string };
  /** A client certificate from another CA: the credentials service must refuse it. */
  stranger: { cert: string; key: string };
}

export function internalTls(): InternalTlsFiles {
  const file = (name: string) => join(certsDir, name);
  const pair = (name: string) => ({ cert: file(`internal-${name}.pem`), key: file(`internal-${name}-key.pem`) });
  return { ca: file('internal-ca.pem'), server: pair('server'), client: pair('client'), stranger: pair('stranger') };
}
