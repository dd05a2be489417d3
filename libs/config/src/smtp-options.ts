import type { SecureVersion } from 'node:tls';
import type { SmtpConfig } from './types.js';

/** How to reach a sender's SMTP server, in nodemailer's terms (its pools and single connections). */
export interface SmtpConnectionOptions {
  host: string;
  port: number;
  secure: boolean;
  requireTLS: boolean;
  ignoreTLS: boolean;
  connectionTimeout: number;
  greetingTimeout: number;
  socketTimeout: number;
  tls: { minVersion: SecureVersion; servername?: string; ca?: string };
}

/**
 * The connection settings of a sender's `smtp:` section: the same for delivery and for
 * TestSender, so a test passes only where delivery can. TLS 1.2 at least; `security: tls` is
 * implicit TLS, `starttls` requires the upgrade, `none` never tries it.
 */
export function smtpConnectionOptions(smtp: SmtpConfig): SmtpConnectionOptions {
  return {
    host: smtp.host,
    port: smtp.port,
    secure: smtp.security === 'tls',
    requireTLS: smtp.security === 'starttls',
    ignoreTLS: smtp.security === 'none',
    connectionTimeout: smtp.timeouts.connectMs,
    greetingTimeout: smtp.timeouts.greetingMs,
    socketTimeout: smtp.timeouts.socketMs,
    tls: { minVersion: 'TLSv1.2', ...(smtp.servername ? { servername: smtp.servername } : {}), ...(smtp.ca ? { ca: smtp.ca } : {}) },
  };
}
