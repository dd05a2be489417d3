import { createPrivateKey } from 'node:crypto';
import { ConfigError } from '@relay/core';
import { MissingSecret, Secret } from './secret.js';
import type { GoogleServiceAccountConfig } from './types.js';

type Resolve = (ref: string, key: string) => Secret;

/** The largest service account key file read (Google's are about 2.3 KB). */
export const MAX_SERVICE_ACCOUNT_FILE_BYTES = 64 * 1024;

/** relay.yaml's oauth2 auth fields of a service account, as written (after the schema). */
export interface RawServiceAccount {
  service_account?: { client_email: string; private_key: string } | undefined;
  service_account_file?: string | undefined;
  client_id?: string | undefined;
}

/**
 * A Google service account's key for domain-wide delegation, from `service_account:` (address and
 * private key) or `service_account_file:` (the JSON key file). The key and the file are secrets:
 * read only where secrets are resolved. Refuses, naming the field: a key that is not an
 * unencrypted RSA PEM key, a file that is not a service account key, and a client_id that is not
 * the key file's. Returns the key and the service account's client id (its unique ID) when known.
 */
export function loadServiceAccount(raw: RawServiceAccount, key: string, resolve: Resolve): { serviceAccount: GoogleServiceAccountConfig; clientId: string } {
  if (raw.service_account) {
    const field = `${key}.service_account.private_key`;
    let privateKey = resolve(raw.service_account.private_key, field);
    if (privateKey.resolved && !(privateKey instanceof MissingSecret)) privateKey = new Secret(rsaKey(privateKey.reveal(), field));
    return {
      serviceAccount: { clientEmail: raw.service_account.client_email, privateKey, privateKeyId: undefined, file: undefined },
      clientId: raw.client_id ?? '',
    };
  }
  const path = raw.service_account_file!;
  const field = `${key}.service_account_file`;
  const file = resolve(`file:${path}`, field);
  if (!file.resolved) {
    return { serviceAccount: { clientEmail: undefined, privateKey: file, privateKeyId: undefined, file: path }, clientId: raw.client_id ?? '' };
  }
  const text = file.reveal();
  if (Buffer.byteLength(text) > MAX_SERVICE_ACCOUNT_FILE_BYTES) {
    throw new ConfigError(`${field}: ${path} is larger than ${MAX_SERVICE_ACCOUNT_FILE_BYTES / 1024} KiB; a service account key file is about 2 KB`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch {
    doc = {};
  }
  const str = (name: string) => (typeof doc[name] === 'string' && doc[name] !== '' ? (doc[name] as string) : undefined);
  const clientEmail = str('client_email');
  const pem = str('private_key');
  if (doc.type !== 'service_account' || !clientEmail || !pem) {
    throw new ConfigError(
      `${field}: ${path} is not a Google service account key (a JSON file with "type": "service_account", "client_email" and "private_key"; create one under IAM & Admin → Service accounts → the account → Keys → Add key → JSON)`,
    );
  }
  const fileClientId = str('client_id');
  if (raw.client_id !== undefined && fileClientId !== undefined && raw.client_id !== fileClientId) {
    throw new ConfigError(`${key}.client_id: "${raw.client_id}" is not the client_id of ${path} ("${fileClientId}"); leave client_id out or give that one`);
  }
  return {
    serviceAccount: { clientEmail, privateKey: new Secret(rsaKey(pem, field)), privateKeyId: str('private_key_id'), file: path },
    clientId: raw.client_id ?? fileClientId ?? '',
  };
}

/**
 * The RSA private key in `text` as PKCS#8 PEM. Accepts the key as Google's JSON file writes it
 * inside a string (`\n` escapes), which is how it often arrives in an environment variable.
 */
export function rsaKey(text: string, field: string): string {
  const pem = !text.includes('\n') && text.includes('\\n') ? text.replaceAll('\\n', '\n') : text;
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(
      `${field}: not an unencrypted PEM private key (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the "private_key" of the service account's JSON key file`,
      { cause: err },
    );
  }
  if (key.asymmetricKeyType !== 'rsa') throw new ConfigError(`${field}: a ${key.asymmetricKeyType ?? 'non-RSA'} key; Google service account keys are RSA`);
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/**
 * SetSenderSecret of a service account's private key (`smtp.auth.service_account.private_key`):
 * throws a ConfigError naming `value` unless it is an unencrypted RSA PEM key, so a wrong value is
 * refused when it is set rather than at the first token request. Other fields pass.
 */
export function checkServiceAccountKey(field: string, value: string): void {
  if (field === 'smtp.auth.service_account.private_key') rsaKey(value, 'value');
}
