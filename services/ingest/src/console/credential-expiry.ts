import { type ConsoleConfig, expiryLevel } from '@relay/config';

/** What the console's own sign-in with the identity provider runs out of: its client secret or its certificate. */
export interface ConsoleCredentialEnd {
  kind: 'client_secret' | 'certificate';
  expiresAt: Date;
}

export function consoleCredentialEnd(c: ConsoleConfig | undefined): ConsoleCredentialEnd | undefined {
  if (c?.clientCertificate) return { kind: 'certificate', expiresAt: c.clientCertificate.notAfter };
  if (c?.clientSecretExpiresAt) return { kind: 'client_secret', expiresAt: c.clientSecretExpiresAt };
  return undefined;
}

interface Log {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Warns that the console's sign-in credential runs out: once each 30, 14 and 3 days before its
 * end, and once it has ended (people can then no longer sign in). The same thresholds as the
 * senders' credentials (relay-credentials); `check` is called at start and hourly.
 */
export function createConsoleExpiryCheck(deps: { config: () => ConsoleConfig | undefined; logger: Log; now?: () => number }): { check(): void } {
  const said = new Set<string>();
  return {
    check() {
      const end = consoleCredentialEnd(deps.config());
      if (!end) return;
      const level = expiryLevel(end.expiresAt, (deps.now ?? Date.now)());
      if (level === 'ok') return;
      const key = `${end.kind}\0${end.expiresAt.toISOString()}\0${level}`;
      if (said.has(key)) return;
      said.add(key);
      const what = end.kind === 'certificate' ? 'certificate' : 'client secret';
      const fields = {
        kind: end.kind,
        expires_at: end.expiresAt.toISOString(),
        remedy: `Make a new ${what} for the console's app registration (Entra admin center → App registrations → the app → Certificates & secrets), then set console.${end.kind === 'certificate' ? 'client_certificate' : 'client_secret and console.client_secret_expires_at'} in relay.yaml.`,
      };
      if (level === 'expired') deps.logger.error(fields, `the console's ${what} has expired: nobody can sign in to the console`);
      else deps.logger.warn({ ...fields, days_left: level }, `the console's ${what} expires within ${level} days`);
    },
  };
}
