import type { RelayEnv } from '@relay/config';
import { ConfigError } from '@relay/core';

/**
 * The certificate and key for the SMTP door (RELAY_TLS_CERT / RELAY_TLS_KEY, read with the
 * environment). Either SMTP port needs them: AUTH is only offered over TLS, so a door without it
 * could take no logins.
 */
export function smtpDoorTls(env: RelayEnv): { cert: Buffer; key: Buffer } | undefined {
  const wanted = env.smtpPort !== undefined || env.smtpsPort !== undefined;
  if (!wanted) return undefined;
  const which = env.smtpPort !== undefined ? 'RELAY_SMTP_PORT' : 'RELAY_SMTPS_PORT';
  if (!env.tls) throw new ConfigError(`RELAY_TLS_CERT and RELAY_TLS_KEY: required with ${which} (PEM certificate chain and private key the SMTP door serves)`);
  return env.tls;
}
