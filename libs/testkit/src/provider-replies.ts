import type { SmtpServerOptions } from './smtp-server.js';
import type { SmtpReply } from './smtp-common.js';

/** A reply a provider sends, and to which command: AUTH, RCPT TO, or the end of DATA. */
export interface ProviderReply extends SmtpReply {
  phase: 'auth' | 'rcpt' | 'data';
}

/**
 * Microsoft 365's and Google's own reply texts for the failures campus relays meet, as their
 * servers send them (multi-line where they are; the server ids at the end are examples).
 */
export const PROVIDER_REPLIES = {
  /** Exchange Online once basic authentication for SMTP client submission is retired. */
  basicAuthRetired: { phase: 'auth', code: 550, message: '5.7.30 Basic authentication is not supported for Client Submission.' },
  smtpAuthDisabledForTenant: {
    phase: 'auth',
    code: 535,
    message:
      '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [MN2PR05CA0004.namprd05.prod.outlook.com 2026-12-01T08:59:57.214Z 08DBB276B7E699C4]',
  },
  smtpAuthDisabledForMailbox: {
    phase: 'auth',
    code: 535,
    message:
      '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [AM0PR02CA0095.eurprd02.prod.outlook.com 2026-12-01T08:12:44.123Z 08DD0F3A1B2C3D4E]',
  },
  sendAsDenied: {
    phase: 'data',
    code: 550,
    message: '5.7.60 SMTP; Client does not have permissions to send as this sender [MW2PR1901MB2155.namprd19.prod.outlook.com]',
  },
  /** High Volume Email (smtp.hve.mx.microsoft) with an access token close to its expiry. */
  tokenExpiringSoon: { phase: 'auth', code: 501, message: '5.5.127 Invalid XOAUTH2 auth data - Token will expire soon' },
  gmailDailyUserLimit: {
    phase: 'data',
    code: 550,
    message:
      '5.4.5 Daily user sending limit exceeded. For more information on Gmail\n5.4.5 sending limits go to\n5.4.5  https://support.google.com/a/answer/166852 d2e1a72fcca58-76e7d551493sm9728466b3a.112 - gsmtp',
  },
  /** The Workspace SMTP relay service (smtp-relay.gmail.com). */
  relayDailyCustomerLimit: {
    phase: 'data',
    code: 550,
    message:
      '5.7.1 Daily SMTP relay limit exceeded for customer. For more information on\n5.7.1 SMTP relay sending limits please contact your administrator or visit\n5.7.1  https://support.google.com/a/answer/6140680#dailylimit b6-20020a170902d88600b001967d95881csm1165800plz.51 - gsmtp',
  },
  relayPeakCustomerLimit: {
    phase: 'rcpt',
    code: 450,
    message:
      '4.2.1 Peak SMTP relay limit exceeded for customer. This is a temporary error.\n4.2.1 For more information on SMTP relay limits, please contact your\n4.2.1 administrator or visit https://support.google.com/a/answer/6140680 a1-20020a170902d88600b001967d95881csm1165800plz.52 - gsmtp',
  },
  applicationSpecificPasswordRequired: {
    phase: 'auth',
    code: 534,
    message:
      '5.7.9 Application-specific password required. For more information, go to\n5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor w11-20020a056512098b00b0050e8ea87dcesm1401366lft.169 - gsmtp',
  },
  gmailBadCredentials: {
    phase: 'auth',
    code: 535,
    message:
      '5.7.8 Username and Password not accepted. For more information, go to\n5.7.8  https://support.google.com/mail/?p=BadCredentials af79cd13be357-794f3061475sm18893085a.74 - gsmtp',
  },
} as const satisfies Record<string, ProviderReply>;

/** The reply as the client library reports it: each line with its code, "-" on all but the last. */
export function replyText(r: SmtpReply): string {
  const lines = r.message.split('\n');
  return lines.map((l, i) => `${r.code}${i < lines.length - 1 ? '-' : ' '}${l}`).join('\n');
}

/** Test SMTP server options that answer `r` at its phase (every AUTH, or every RCPT TO / DATA). */
export function answering(r: ProviderReply): Pick<SmtpServerOptions, 'authFailure' | 'reply'> {
  const reply = { code: r.code, message: r.message };
  return r.phase === 'auth' ? { authFailure: reply } : { reply: (ctx) => (ctx.phase === r.phase ? reply : undefined) };
}
