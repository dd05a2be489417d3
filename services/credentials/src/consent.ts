import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { SenderConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import type { Logger } from '@relay/telemetry';
import type { CredentialStatusStore } from './credential-status.js';
import type { SecretBox } from './secret-box.js';
import type { RefreshTokenStore } from './secret-store.js';
import type { TokenCache } from './token-cache.js';
import { consentAuthOf } from './graph-delegated.js';
import { GOOGLE_AUTHORIZE_URL, MICROSOFT_AUTHORITY, SCOPES, type OAuth2Auth, type RedeemedCode, type TokenAuth } from './token-providers.js';

/** How long a sign-in started by BeginConsent may take. */
export const CONSENT_STATE_TTL_MS = 10 * 60_000;

export interface ConsentDeps {
  senders: Map<string, SenderConfig>;
  redis: Redis;
  box: SecretBox;
  store: RefreshTokenStore;
  cache: TokenCache;
  logger: Logger;
  prefix: string;
  /** RELAY_PUBLIC_URL: how the browser reaches this service. */
  publicUrl: string;
  /** Redeems an authorization code at the provider; returns the refresh token and who signed in. */
  redeemCode: (auth: OAuth2Auth, req: { code: string; verifier: string; redirectUri: string; scopes: string[] }) => Promise<RedeemedCode>;
  /** Where who consented and when is kept (shown by GetSender). */
  status?: Pick<CredentialStatusStore, 'consented'>;
}

interface PendingConsent {
  sender: string;
  verifier: string;
  redirectUri: string;
}

export interface CallbackResult {
  status: number;
  message: string;
}

export interface Consent {
  /** The provider's sign-in URL for an oauth2 sender (authorization code + PKCE S256, single-use state). */
  begin(senderId: string): Promise<string>;
  /** Handles the redirect back from the provider (`/oauth/callback?code&state`). */
  callback(query: URLSearchParams): Promise<CallbackResult>;
}

/** Bounds on what a redirect may carry; the provider's codes and states are far shorter. */
export const CONSENT_QUERY_LIMITS = { state: 512, code: 4096, error: 128, error_description: 1024 } as const;

/**
 * The redirect's fields as the callback reads them: only those given, each cut to its bound (an
 * over-long state or code then matches nothing and is refused as unknown).
 */
export function consentQuery(fields: { state: string; code: string; error: string; errorDescription: string }): URLSearchParams {
  const q = new URLSearchParams();
  const put = (name: keyof typeof CONSENT_QUERY_LIMITS, value: string) => {
    if (value) q.set(name, value.slice(0, CONSENT_QUERY_LIMITS[name]));
  };
  put('state', fields.state);
  put('code', fields.code);
  put('error', fields.error);
  put('error_description', fields.errorDescription);
  return q;
}

export function redirectUriOf(publicUrl: string): string {
  return `${publicUrl}/oauth/callback`;
}

/**
 * The sign-in's scopes: sending (SMTP, or Graph Mail.Send for a Graph sender), plus OpenID
 * Connect's so the answer says which account signed in.
 */
export function delegatedScopes(auth: TokenAuth): string[] {
  return auth.provider === 'google' ? [...SCOPES.google, 'openid', 'email'] : [...(auth.scopes ?? SCOPES.microsoftDelegatedSmtp), 'openid', 'profile'];
}

export function createConsent(deps: ConsentDeps): Consent {
  const { redis, box, logger } = deps;
  const stateKey = (state: string) => `${deps.prefix}:consent:${createHash('sha256').update(state).digest('base64url')}`;
  const context = (state: string) => `consent:${deps.prefix}:${state}`;

  return {
    async begin(senderId) {
      const sender = deps.senders.get(senderId);
      if (!sender) throw new RelayError(ErrorCode.NotFound, `sender "${senderId}" is not configured`);
      if (sender.graph && sender.graph.flow !== 'refresh_token') {
        throw new RelayError(
          ErrorCode.FailedPrecondition,
          `sender "${senderId}" uses transport: graph with an app-only token; there is nobody to sign in. An administrator grants the app the Microsoft Graph application permission Mail.Send (and Mail.ReadWrite for attachments over 3 MB) with "Grant admin consent" in Entra ID; TestSender then checks it. For delegated Mail.Send signed in by the mailbox instead, set graph.flow: refresh_token`,
        );
      }
      const auth = consentAuthOf(sender);
      if (!auth) throw new RelayError(ErrorCode.FailedPrecondition, `sender "${senderId}" does not use OAuth2 (smtp.auth.type: oauth2)`);
      if (auth.flow === 'service_account') {
        throw new RelayError(
          ErrorCode.FailedPrecondition,
          `sender "${senderId}" uses flow: service_account (Google domain-wide delegation); there is nobody to sign in. A Google Workspace administrator grants the delegation in the Google Admin console: Security → Access and data control → API controls → Domain-wide delegation`,
        );
      }
      if (auth.flow !== 'refresh_token') {
        throw new RelayError(
          ErrorCode.FailedPrecondition,
          `sender "${senderId}" uses flow: client_credentials (app-only); there is nobody to sign in. Grant the app SMTP.SendAsApp and register its service principal in Exchange instead`,
        );
      }
      const state = randomBytes(32).toString('base64url');
      const verifier = randomBytes(48).toString('base64url');
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      const redirectUri = redirectUriOf(deps.publicUrl);
      const pending: PendingConsent = { sender: senderId, verifier, redirectUri };
      // Keyed by a hash of the state and sealed: Redis never holds a usable state or verifier.
      await redis.set(stateKey(state), box.sealToString(JSON.stringify(pending), context(state)), 'PX', CONSENT_STATE_TTL_MS);
      const url = new URL(authorizeEndpoint(auth));
      const q = url.searchParams;
      q.set('client_id', auth.clientId);
      q.set('response_type', 'code');
      q.set('redirect_uri', redirectUri);
      q.set('response_mode', 'query');
      q.set('scope', delegatedScopes(auth).join(' '));
      q.set('state', state);
      q.set('code_challenge', challenge);
      q.set('code_challenge_method', 'S256');
      q.set('login_hint', auth.user);
      if (auth.provider === 'google') {
        q.set('access_type', 'offline');
        q.set('prompt', 'consent');
      } else {
        q.set('prompt', 'select_account');
      }
      logger.info({ sender: senderId }, 'consent started');
      return url.toString();
    },

    async callback(query) {
      const state = query.get('state');
      if (!state) return { status: 400, message: 'The sign-in answer has no state. Start again with "Authenticate with MFA".' };
      // GETDEL makes the state single-use even when the same redirect arrives twice at two replicas.
      const sealed = await redis.getdel(stateKey(state));
      if (!sealed) return { status: 400, message: 'This sign-in link is unknown, expired or was already used. Start again with "Authenticate with MFA".' };
      let pending: PendingConsent;
      try {
        pending = JSON.parse(box.openString(sealed, context(state))) as PendingConsent;
      } catch {
        return { status: 400, message: 'This sign-in answer is not valid. Start again with "Authenticate with MFA".' };
      }
      const providerError = query.get('error');
      if (providerError) {
        const text = query.get('error_description') ?? providerError;
        logger.warn({ sender: pending.sender, error: providerError }, 'consent refused at the provider');
        return { status: 400, message: `The provider did not grant access for sender "${pending.sender}": ${text.split(/\r?\n/)[0]}` };
      }
      const code = query.get('code');
      if (!code) return { status: 400, message: 'The sign-in answer has no authorization code.' };
      const auth = consentAuthOf(deps.senders.get(pending.sender));
      if (auth?.flow !== 'refresh_token') return { status: 400, message: `Sender "${pending.sender}" no longer signs in with OAuth2 (flow: refresh_token).` };
      let redeemed: RedeemedCode;
      try {
        redeemed = await deps.redeemCode(auth, { code, verifier: pending.verifier, redirectUri: pending.redirectUri, scopes: delegatedScopes(auth) });
      } catch (err) {
        logger.warn({ sender: pending.sender, err: (err as Error).message }, 'authorization code redemption failed');
        return { status: 502, message: `The provider refused the sign-in for sender "${pending.sender}": ${(err as Error).message}` };
      }
      // A token for another mailbox would send this sender's mail as someone else (or fail later).
      if (!redeemed.account) {
        logger.warn({ sender: pending.sender }, 'consent refused: the provider did not say which account signed in');
        return {
          status: 403,
          message: `The provider did not say which account signed in, so nothing was stored for sender "${pending.sender}". Start again with "Authenticate with MFA".`,
        };
      }
      if (redeemed.account.toLowerCase() !== auth.user.toLowerCase()) {
        logger.warn({ sender: pending.sender, signed_in: redeemed.account, expected: auth.user }, 'consent refused: wrong account');
        return {
          status: 403,
          message: `You signed in as ${redeemed.account}, but sender "${pending.sender}" sends as ${auth.user}. Nothing was stored. Sign out, then start again with "Authenticate with MFA" and sign in as ${auth.user}.`,
        };
      }
      const refreshToken = redeemed.refreshToken;
      await deps.store.put(pending.sender, refreshToken, 'consent', auth.refreshToken?.reveal());
      // The next token comes from the new grant, on every replica that reads Redis: one from the old
      // grant may lack a scope this sign-in added (IMAP.AccessAsUser.All).
      await deps.cache.drop(pending.sender).catch((err: unknown) => {
        deps.cache.forget(pending.sender);
        logger.warn({ sender: pending.sender, err: (err as Error).message }, 'cached token not dropped after consent');
      });
      // The grant is stored: a failure to note who gave it does not undo it.
      await deps.status
        ?.consented(pending.sender, redeemed.account)
        .catch((err: unknown) => logger.warn({ sender: pending.sender, err: (err as Error).message }, 'consent not recorded in the credential status'));
      logger.info({ sender: pending.sender }, 'consent completed; refresh token stored');
      return { status: 200, message: `Sender "${pending.sender}" is authorized. You can close this window.` };
    },
  };
}

function authorizeEndpoint(auth: OAuth2Auth): string {
  if (auth.provider === 'google') return GOOGLE_AUTHORIZE_URL;
  return `${auth.authorityUrl ?? MICROSOFT_AUTHORITY}/${auth.tenantId ?? 'organizations'}/oauth2/v2.0/authorize`;
}
