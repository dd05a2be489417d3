import type { SenderConfig } from '@relay/config';
import { SCOPES, type TokenAuth } from './token-providers.js';

/**
 * A delegated Microsoft SMTP sender whose mailbox the relay also opens over IMAP (copy_to_sent,
 * feedback.imap) signs in for IMAP.AccessAsUser.All as well as SMTP.Send: both are scopes of
 * https://outlook.office.com, so one token carries both and serves SMTP and IMAP alike.
 */
export function needsImapScope(sender: SenderConfig): boolean {
  const auth = sender.smtp?.auth;
  if (auth?.type !== 'oauth2' || auth.provider !== 'microsoft' || auth.flow !== 'refresh_token') return false;
  return sender.sentCopy !== undefined || sender.feedback?.imap !== undefined;
}

/** How the token of an SMTP sender's oauth2 auth is fetched: with the IMAP scope where it needs one. */
export function smtpTokenAuth(sender: SenderConfig): TokenAuth | undefined {
  const auth = sender.smtp?.auth;
  if (auth?.type !== 'oauth2') return undefined;
  return needsImapScope(sender) ? { ...auth, scopes: SCOPES.microsoftDelegatedSmtpImap, optionalScopes: [SCOPES.microsoftDelegatedImap] } : auth;
}

/**
 * Why the sender's token cannot sign in to IMAP, or '' when it can (or when nothing says it
 * cannot: `granted` unknown). A refresh token from a sign-in that did not ask for IMAP (before
 * copy_to_sent or feedback.imap was set) keeps serving SMTP; IMAP needs a new sign-in.
 */
export function imapRefusal(sender: SenderConfig, granted: readonly string[] | undefined): string {
  if (!needsImapScope(sender) || granted === undefined) return '';
  const scope = SCOPES.microsoftDelegatedImap.toLowerCase();
  if (granted.some((s) => s.toLowerCase() === scope)) return '';
  return `sender "${sender.id}": its Microsoft sign-in was not granted ${SCOPES.microsoftDelegatedImap} (granted: ${granted.join(' ') || 'nothing listed'}), so IMAP refuses its token; sign in again with Authenticate with MFA to grant IMAP.AccessAsUser.All`;
}
