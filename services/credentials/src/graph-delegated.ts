import type { SenderConfig } from '@relay/config';
import { graphTokenAuth } from './graph-auth.js';
import { smtpTokenAuth } from './imap-scope.js';
import type { TokenAuth } from './token-providers.js';

/**
 * What a sender's sign-in (BeginConsent) is for: its SMTP OAuth2 auth, or for a Graph sender its
 * Microsoft app with the delegated Mail.Send scopes. Undefined when it signs in with neither.
 */
export function consentAuthOf(sender: SenderConfig | undefined): TokenAuth | undefined {
  if (sender?.graph) return graphTokenAuth(sender.graph);
  return sender ? smtpTokenAuth(sender) : undefined;
}

/**
 * The delegated permissions (`scp`, space-separated) in a user's access token, or undefined when
 * the token is not a readable JWT. Entra ID puts the granted delegated Graph permissions there.
 */
export function tokenScopes(accessToken: string): string[] | undefined {
  const parts = accessToken.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { scp?: unknown };
    return typeof claims.scp === 'string' ? claims.scp.split(' ').filter(Boolean) : [];
  } catch {
    return undefined;
  }
}
