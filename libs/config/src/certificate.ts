import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '@relay/core';
import { MissingSecret, Secret } from './secret.js';
import type { ClientCertificateConfig, RelayConfig, SenderConfig } from './types.js';

/** relay.yaml `client_certificate:` as written (after the schema). */
export interface RawClientCertificate {
  certificate_file?: string | undefined;
  certificate_pem?: string | undefined;
  private_key_file?: string | undefined;
  private_key?: string | undefined;
}

type Resolve = (ref: string, key: string) => Secret;

/**
 * An Entra ID application's certificate credential: the certificate (read here, in every service,
 * as it is public), its thumbprints and notAfter, and the private key as a secret (resolved only
 * where secrets are). Refuses, naming `owner` and the field: an unreadable or non-RSA certificate,
 * one outside its validity period, and, where the key is resolved, a key that is not the
 * certificate's.
 */
export function loadClientCertificate(raw: RawClientCertificate, key: string, owner: string, resolve: Resolve, now = Date.now()): ClientCertificateConfig {
  const certField = raw.certificate_file !== undefined ? `${key}.certificate_file` : `${key}.certificate_pem`;
  let pem = raw.certificate_pem;
  if (raw.certificate_file !== undefined) {
    try {
      pem = readFileSync(raw.certificate_file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${certField}: cannot read ${raw.certificate_file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`${certField}: ${raw.certificate_file} holds no PEM certificate`);
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem!);
  } catch (err) {
    throw new ConfigError(`${certField}: not a readable X.509 certificate (${(err as Error).message})`, { cause: err });
  }
  const type = cert.publicKey.asymmetricKeyType;
  if (type !== 'rsa') {
    throw new ConfigError(
      `${certField}: the certificate of ${owner} has a${type === 'ec' ? 'n' : ''} ${type ?? 'unknown'} key; Entra ID takes RSA certificates only`,
    );
  }
  const notAfter = cert.validToDate;
  if (notAfter.getTime() <= now) {
    throw new ConfigError(
      `${certField}: the certificate of ${owner} expired on ${notAfter.toISOString()} (notAfter); upload a new certificate to the app registration (Certificates & secrets) and configure it here`,
    );
  }
  if (cert.validFromDate.getTime() > now) {
    throw new ConfigError(`${certField}: the certificate of ${owner} is not valid before ${cert.validFromDate.toISOString()} (notBefore)`);
  }
  const keyField = raw.private_key_file !== undefined ? `${key}.private_key_file` : `${key}.private_key`;
  const ref = raw.private_key_file !== undefined ? `file:${raw.private_key_file}` : raw.private_key!;
  let privateKey = resolve(ref, keyField);
  // Only a service that reads secrets has the key; a managed sender's may not be set yet.
  if (privateKey.resolved && !(privateKey instanceof MissingSecret)) {
    // MSAL wants PKCS#8 (-----BEGIN PRIVATE KEY-----); a PKCS#1 RSA key is the same key.
    privateKey = new Secret(keyOf(cert, privateKey.reveal(), keyField, owner).export({ type: 'pkcs8', format: 'pem' }).toString());
  }
  return {
    certificatePem: pem!,
    certificateFile: raw.certificate_file,
    thumbprintSha256: hex(cert.fingerprint256),
    thumbprint: hex(cert.fingerprint),
    notAfter,
    privateKey,
  };
}

/** The private key in `pem`, checked to be `cert`'s; a ConfigError naming `keyField` otherwise. */
function keyOf(cert: X509Certificate, pem: string, keyField: string, owner: string): KeyObject {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(`${keyField}: not an unencrypted PEM private key (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
      cause: err,
    });
  }
  if (keyObject.asymmetricKeyType !== cert.publicKey.asymmetricKeyType || !cert.checkPrivateKey(keyObject)) {
    throw new ConfigError(`${keyField}: the private key does not belong to the certificate of ${owner} (SHA-256 thumbprint ${hex(cert.fingerprint256)})`);
  }
  return keyObject;
}

/**
 * SetSenderSecret of a certificate's private key (`field` ends in `client_certificate.private_key`)
 * for a sender managed through the API: throws a ConfigError naming `value` unless `pem` is the
 * key of the certificate in the sender's settings, so a wrong key is refused when it is set rather
 * than leaving the sender unusable. Other fields pass.
 */
export function checkCertificateKey(spec: Record<string, unknown>, sender: string, field: string, pem: string): void {
  if (!field.endsWith('.client_certificate.private_key')) return;
  let at: unknown = spec;
  for (const k of field.split('.').slice(0, -1)) at = at && typeof at === 'object' ? (at as Record<string, unknown>)[k] : undefined;
  const certPem = (at as { certificate_pem?: unknown } | undefined)?.certificate_pem;
  if (typeof certPem !== 'string') return;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return; // PutSender refused such settings already
  }
  keyOf(cert, pem, 'value', `sender "${sender}"`);
}

function hex(fingerprint: string): string {
  return fingerprint.replaceAll(':', '').toUpperCase();
}

/** The certificate a sender signs in to Entra ID with (SMTP OAuth2 or Graph), if it uses one. */
export function senderCertificate(sender: SenderConfig): ClientCertificateConfig | undefined {
  if (sender.graph) return sender.graph.clientCertificate;
  const auth = sender.smtp?.auth;
  return auth?.type === 'oauth2' ? auth.clientCertificate : undefined;
}

/** When each certificate credential in a config stops working: the senders' and the console's. */
export function certificateExpiries(config: RelayConfig): { sender: string | undefined; notAfter: Date; thumbprintSha256: string }[] {
  const out: { sender: string | undefined; notAfter: Date; thumbprintSha256: string }[] = [];
  for (const s of config.senders) {
    const c = senderCertificate(s);
    if (c) out.push({ sender: s.id, notAfter: c.notAfter, thumbprintSha256: c.thumbprintSha256 });
  }
  const console = config.console?.clientCertificate;
  if (console) out.push({ sender: undefined, notAfter: console.notAfter, thumbprintSha256: console.thumbprintSha256 });
  return out;
}
