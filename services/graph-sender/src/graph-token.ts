import { status, type ServiceError } from '@grpc/grpc-js';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { retryable } from '@relay/core';
import { remedyFor } from '@relay/mail';
import { answeredByRelay, type CredentialsClient } from '@relay/proto';

/** Asked for again this long before expiry: the credentials service refreshes tokens 10 minutes ahead. */
export const TOKEN_MARGIN_MS = 5 * 60_000;

export interface GraphTokens {
  /** An app-only Graph token for `sender`; `rejected` says Graph answered 401 to the last one. */
  get(sender: string, opts?: { rejected?: boolean }): Promise<string>;
  /**
   * Why the sender's token cannot read its report folder (feedback.graph: a delegated sign-in
   * without Mail.ReadWrite), '' when it can; `rejected` asks for a new token first.
   */
  readRefusal(sender: string, opts?: { rejected?: boolean }): Promise<string>;
  /** Forgets every token: the senders' settings changed (another tenant, app or Graph URL). */
  clear(): void;
}

/**
 * Graph access tokens per sender, from the credentials service (which caches them in Redis for
 * every replica and refreshes one at a time), reused here until shortly before they expire.
 * Tokens stay in this process's memory only.
 */
export function createGraphTokens(client: Pick<CredentialsClient, 'getGraphToken'>): GraphTokens {
  const entries = new Map<string, { token: string; until: number; readRefusal: string }>();
  const pending = new Map<string, Promise<string>>();

  async function fetchToken(sender: string, rejected: boolean): Promise<string> {
    try {
      const res = await client.getGraphToken({ sender, tokenRejected: rejected });
      const expires = res.expiresAt ? timestampDate(res.expiresAt).getTime() : Date.now() + 5 * 60_000;
      entries.set(sender, { token: res.accessToken, until: expires - TOKEN_MARGIN_MS, readRefusal: res.readRefusal });
      return res.accessToken;
    } catch (err) {
      const e = err as ServiceError;
      // The credentials service says why (a refused client secret, the identity platform down);
      // the message waits and is tried again.
      const detail =
        !answeredByRelay(e) && (e.code === status.UNAVAILABLE || e.code === status.DEADLINE_EXCEEDED)
          ? `credentials service unavailable: ${e.details}`
          : e.details || e.message;
      const remedy = remedyFor(detail);
      throw retryable(detail, { cause: err, ...(remedy ? { remedy } : {}) });
    }
  }

  const tokens: GraphTokens = {
    clear() {
      entries.clear();
      pending.clear();
    },
    async readRefusal(sender, opts = {}) {
      await tokens.get(sender, opts);
      return entries.get(sender)?.readRefusal ?? '';
    },
    async get(sender, opts = {}) {
      const rejected = opts.rejected ?? false;
      const hit = entries.get(sender);
      if (!rejected && hit && hit.until > Date.now()) return hit.token;
      if (rejected) entries.delete(sender);
      const running = pending.get(sender);
      if (running && !rejected) return running;
      const p = fetchToken(sender, rejected).finally(() => {
        if (pending.get(sender) === p) pending.delete(sender);
      });
      pending.set(sender, p);
      return p;
    },
  };
  return tokens;
}
