import type { SenderConfig } from '@relay/config';
import { graphSenderTokenAuth } from './graph-auth.js';
import { smtpTokenAuth } from './imap-scope.js';
import type { TokenAuth } from './token-providers.js';

/**
 * What a sender's sign-in (BeginConsent) is for: its SMTP OAuth2 auth, or for a Graph sender its
 * Microsoft app with the delegated Mail.Send scopes (and Mail.ReadWrite for feedback.graph).
 * Undefined when it signs in with neither.
 */
export function consentAuthOf(sender: SenderConfig | undefined): TokenAuth | undefined {
  if (sender?.graph) return graphSenderTokenAuth(sender, sender.graph);
  return sender ? smtpTokenAuth(sender) : undefined;
}
