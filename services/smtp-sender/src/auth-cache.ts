import { status, type ServiceError } from '@grpc/grpc-js';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { retryable } from '@relay/core';
import { remedyFor } from '@relay/mail';
import { answeredByRelay, GetSmtpAuthResponse_Kind as Kind, type CredentialsClient, type GetSmtpAuthResponse } from '@relay/proto';

/** How long a password fetched from the credentials service is reused. */
export const PASSWORD_TTL_MS = 60_000;
/** Asked for again this long before expiry: the credentials service refreshes tokens 10 minutes ahead. */
export const TOKEN_MARGIN_MS = 5 * 60_000;

export { Kind as SmtpAuthKind };

/**
 * Credentials per sender, fetched from the credentials service and reused until they go stale,
 * so a burst of mail costs one call. Secrets stay in this process's memory only.
 */
export class AuthCache {
  readonly #client: CredentialsClient;
  readonly #entries = new Map<string, { auth: GetSmtpAuthResponse; until: number }>();
  readonly #pending = new Map<string, Promise<GetSmtpAuthResponse>>();

  constructor(client: CredentialsClient) {
    this.#client = client;
  }

  /** Forgets what was fetched: after a configuration change (a new password, another server). */
  clear() {
    this.#entries.clear();
  }

  async get(sender: string, opts: { tokenRejected?: boolean } = {}): Promise<GetSmtpAuthResponse> {
    const hit = this.#entries.get(sender);
    if (hit && hit.until > Date.now() && !opts.tokenRejected) return hit.auth;
    const running = this.#pending.get(sender);
    if (running && !opts.tokenRejected) return running;
    const p = this.#fetch(sender, opts.tokenRejected ?? false).finally(() => this.#pending.delete(sender));
    this.#pending.set(sender, p);
    return p;
  }

  async #fetch(sender: string, tokenRejected: boolean): Promise<GetSmtpAuthResponse> {
    let auth: GetSmtpAuthResponse;
    try {
      auth = await this.#client.getSmtpAuth({ sender, tokenRejected });
    } catch (err) {
      const e = err as ServiceError;
      // The credentials service explains why (e.g. consent needed); the message waits and retries.
      const detail =
        !answeredByRelay(e) && (e.code === status.UNAVAILABLE || e.code === status.DEADLINE_EXCEEDED)
          ? `credentials service unavailable: ${e.details}`
          : e.details || e.message;
      const remedy = remedyFor(detail);
      throw retryable(detail, { cause: err, ...(remedy ? { remedy } : {}) });
    }
    const until = auth.kind === Kind.XOAUTH2 && auth.expiresAt ? timestampDate(auth.expiresAt).getTime() - TOKEN_MARGIN_MS : Date.now() + PASSWORD_TTL_MS;
    this.#entries.set(sender, { auth, until });
    return auth;
  }
}
