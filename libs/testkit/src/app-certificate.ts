import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A self-signed application certificate, as one uploads to an Entra ID app registration. */
export interface AppCertificate {
  certPem: string;
  /** PKCS#8 PEM (PKCS#1 with `pkcs1: true`). */
  keyPem: string;
  certFile: string;
  keyFile: string;
  /** Removes the files. */
  remove(): void;
}

export interface AppCertificateOptions {
  /** Default: one hour ago. */
  notBefore?: Date;
  /** Default: thirty days ahead. */
  notAfter?: Date;
  /** Default rsa. */
  keyType?: 'rsa' | 'ec';
  /** Write the RSA key as PKCS#1 (-----BEGIN RSA PRIVATE KEY-----). */
  pkcs1?: boolean;
  commonName?: string;
}

/** openssl's ASN.1 GeneralizedTime: YYYYMMDDHHMMSSZ. */
const asn1Time = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

/**
 * Makes a key pair with node:crypto and a self-signed certificate for it with openssl (Node cannot
 * write X.509 certificates), with the validity period given, so tests can make expired ones.
 */
export function makeAppCertificate(opts: AppCertificateOptions = {}): AppCertificate {
  const dir = mkdtempSync(join(tmpdir(), 'relay-app-cert-'));
  const keyType = opts.keyType ?? 'rsa';
  const pair = keyType === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyPem = pair.privateKey.export({ type: opts.pkcs1 && keyType === 'rsa' ? 'pkcs1' : 'pkcs8', format: 'pem' }).toString();
  const keyFile = join(dir, 'app-key.pem');
  const certFile = join(dir, 'app.pem');
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  // `openssl ca` is the one openssl 3.0 command that takes explicit start and end dates.
  writeFileSync(
    join(dir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = app',
      '[app]',
      `database = ${join(dir, 'index.txt')}`,
      `new_certs_dir = ${dir}`,
      `serial = ${join(dir, 'serial')}`,
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      'copy_extensions = none',
      '[any]',
      'commonName = supplied',
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      `CN = ${opts.commonName ?? 'relay-test-app'}`,
      '',
    ].join('\n'),
  );
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    run(['req', '-new', '-key', keyFile, '-out', join(dir, 'app.csr'), '-config', join(dir, 'ca.cnf')]);
    run([
      'ca',
      '-batch',
      '-selfsign',
      '-notext',
      '-config',
      join(dir, 'ca.cnf'),
      '-keyfile',
      keyFile,
      '-in',
      join(dir, 'app.csr'),
      '-out',
      certFile,
      '-startdate',
      asn1Time(opts.notBefore ?? new Date(Date.now() - 3_600_000)),
      '-enddate',
      asn1Time(opts.notAfter ?? new Date(Date.now() + 30 * 86_400_000)),
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl could not make a test certificate: ${stderr || (err as Error).message}`, { cause: err });
  }
  return {
    certPem: readFileSync(certFile, 'utf8'),
    keyPem,
    certFile,
    keyFile,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
