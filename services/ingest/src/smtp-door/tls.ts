import { readFileSync } from 'node:fs';
import type { RelayEnv } from '@relay/config';
import { ConfigError } from '@relay/core';

/**
 * The certificate and key for the SMTP door, read from RELAY_TLS_CERT / RELAY_TLS_KEY. Either
 * SMTP port needs them: AUTH is only offered over TLS, so a door without it could take no logins.
 */
export function smtpDoorTls(env: RelayEnv): { cert: string; key: string } | undefined {
  const wanted = env.smtpPort !== undefined || env.smtpsPort !== undefined;
  if (!wanted) return undefined;
  const which = env.smtpPort !== undefined ? 'RELAY_SMTP_PORT' : 'RELAY_SMTPS_PORT';
  if (!env.tlsCertFile) throw new ConfigError(`RELAY_TLS_CERT: required with ${which} (path of the PEM certificate chain the SMTP door serves)`);
  if (!env.tlsKeyFile) throw new ConfigError(`RELAY_TLS_KEY: required with ${which} (path of the PEM private key for RELAY_TLS_CERT)`);
  return { cert: readPem(env.tlsCertFile, 'RELAY_TLS_CERT', 'CERTIFICATE'), key: readPem(env.tlsKeyFile, 'RELAY_TLS_KEY', 'PRIVATE KEY') };
}

function readPem(path: string, name: string, kind: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  if (!text.includes(`-----BEGIN `) || !text.includes(kind)) throw new ConfigError(`${name}: ${path} holds no PEM ${kind.toLowerCase()}`);
  return text;
}
