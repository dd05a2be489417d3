import type { SenderConfig } from '@relay/config';
import type { CachedToken } from './token-cache.js';

/** The delegated Graph permission the report reader needs: list, read and move the mailbox's messages. */
export const GRAPH_READ_PERMISSION = 'Mail.ReadWrite';

/**
 * A delegated Graph sender (graph.flow: refresh_token) that reads its delivery reports
 * (feedback.graph) signs in for Mail.ReadWrite as well as Mail.Send: both are Graph scopes, so
 * one token serves sending and reading.
 */
export function needsGraphReadScope(sender: SenderConfig): boolean {
  return sender.graph?.flow === 'refresh_token' && sender.feedback?.graph === true;
}

/**
 * Why the sender's token cannot read its report folder, or '' when it can (or when nothing says
 * it cannot: `granted` unknown). `granted` is the token's `scp` (short names) or the provider's
 * scope list (full names). A refresh token from a sign-in before feedback.graph was set keeps
 * sending; reading needs a new sign-in.
 */
export function graphReadRefusal(sender: SenderConfig, granted: readonly string[] | undefined): string {
  if (!needsGraphReadScope(sender) || granted === undefined) return '';
  const wanted = GRAPH_READ_PERMISSION.toLowerCase();
  if (granted.some((s) => shortScope(s) === wanted)) return '';
  return `sender "${sender.id}": its Microsoft sign-in was not granted the Graph delegated permission ${GRAPH_READ_PERMISSION} (granted: ${granted.join(' ') || 'nothing listed'}), so its delivery reports cannot be read (feedback.graph); sign in again with Authenticate with MFA to grant Mail.ReadWrite`;
}

/** `https://graph.microsoft.com/Mail.ReadWrite` and `Mail.ReadWrite` alike, lower-cased. */
function shortScope(scope: string): string {
  return scope.slice(scope.lastIndexOf('/') + 1).toLowerCase();
}

/**
 * The delegated permissions of a user's Graph token: its `scp` claim (what Graph checks), else
 * the scopes the provider listed with it; undefined when neither says.
 */
export function grantedGraphScopes(token: Pick<CachedToken, 'accessToken' | 'scopes'>): string[] | undefined {
  return tokenScopes(token.accessToken) ?? token.scopes;
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
