import { ErrorCode, RelayError } from '@relay/core';
import type { Logger } from '@relay/telemetry';
import type { CredentialStatusStore } from './credential-status.js';
import type { RefreshTokenStore } from './secret-store.js';
import type { CachedToken, TokenCache } from './token-cache.js';
import { fetchToken as defaultFetchToken, type FetchedToken, type TokenAuth } from './token-providers.js';

export const TOKEN_DEFAULTS = {
  /** The cross-replica refresh lock expires after this, should its holder die mid-refresh. */
  lockTtlMs: 30_000,
  /** How often a replica waiting on another's refresh looks for the result. */
  waitPollMs: 100,
  /** Give up waiting for a token after this long (the sender retries the message later). */
  waitTimeoutMs: 30_000,
} as const;

export interface OAuthTokensDeps {
  cache: TokenCache;
  store: RefreshTokenStore;
  logger: Logger;
  fetchToken?: (sender: string, auth: TokenAuth, refreshToken: string | undefined) => Promise<FetchedToken>;
  timing?: Partial<typeof TOKEN_DEFAULTS>;
  /** Where the time of each token obtained is noted (shown by GetSender). */
  status?: Pick<CredentialStatusStore, 'tokenObtained'>;
}

export interface OAuthTokens {
  /** An access token for the sender; `rejected` means the provider refused the last one (refresh it). */
  get(sender: string, auth: TokenAuth, opts?: { rejected?: boolean }): Promise<CachedToken>;
}

/**
 * Access tokens with one refresh per sender at a time across all replicas: a Redis lock
 * (SET NX PX) elects the replica that asks the provider; the others wait for its result in the
 * shared cache. Within a replica, concurrent callers share one promise.
 */
export function createOAuthTokens(deps: OAuthTokensDeps): OAuthTokens {
  const { cache, store, logger } = deps;
  const fetchToken = deps.fetchToken ?? defaultFetchToken;
  const t = { ...TOKEN_DEFAULTS, ...deps.timing };
  const pending = new Map<string, { token: Promise<CachedToken>; rejected: boolean }>();

  async function refresh(sender: string, auth: TokenAuth, rejected: boolean): Promise<CachedToken> {
    const startedAt = Date.now();
    const deadline = startedAt + t.waitTimeoutMs;
    // Any fresh token will do, unless the last one was rejected: then only one obtained after the
    // rejection was reported (several sender replicas reporting the same rejection share a refresh).
    const usable = (c: CachedToken | undefined) => (c && (!rejected || c.obtainedAt >= startedAt) ? c : undefined);
    for (;;) {
      const release = await cache.lock(sender, t.lockTtlMs);
      if (release) {
        try {
          const shared = usable(await cache.get(sender, { shared: true }));
          if (shared) return shared;
          const configured = auth.refreshToken?.reveal();
          const refreshToken = auth.flow === 'refresh_token' ? await store.get(sender, configured) : undefined;
          const fetched = await fetchToken(sender, auth, refreshToken);
          if (fetched.refreshToken) {
            await store.put(sender, fetched.refreshToken, 'rotation', configured);
            logger.info({ sender }, 'stored a rotated refresh token');
          }
          const token: CachedToken = {
            accessToken: fetched.accessToken,
            expiresAt: fetched.expiresAt.getTime(),
            obtainedAt: Date.now(),
            ...(fetched.scopes ? { scopes: fetched.scopes } : {}),
          };
          await cache.set(sender, token);
          await deps.status
            ?.tokenObtained(sender, new Date(token.obtainedAt), new Date(token.expiresAt))
            .catch((err: unknown) => logger.warn({ sender, err: (err as Error).message }, 'token refresh not recorded in the credential status'));
          logger.info({ sender, expires_at: new Date(token.expiresAt).toISOString(), rejected }, 'access token refreshed');
          return token;
        } finally {
          await release().catch((err: unknown) => logger.warn({ sender, err: (err as Error).message }, 'could not release the token lock'));
        }
      }
      await new Promise((r) => setTimeout(r, t.waitPollMs));
      const theirs = usable(await cache.get(sender, { shared: true }));
      if (theirs) return theirs;
      if (Date.now() > deadline) throw new RelayError(ErrorCode.Unavailable, `sender "${sender}": timed out waiting for another replica's token refresh`);
    }
  }

  return {
    async get(sender, auth, opts = {}) {
      const rejected = opts.rejected ?? false;
      if (rejected) cache.forget(sender);
      else {
        const hit = await cache.get(sender);
        if (hit) return hit;
      }
      // A caller whose token was refused joins only a refresh that replaces a refused token too:
      // a plain one may hand back the very token the server refused.
      const running = pending.get(sender);
      if (running && (running.rejected || !rejected)) return running.token;
      const token = refresh(sender, auth, rejected).finally(() => {
        if (pending.get(sender)?.token === token) pending.delete(sender);
      });
      pending.set(sender, { token, rejected });
      return token;
    },
  };
}
