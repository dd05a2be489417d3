import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { startTokenRefresh, type TokenRefreshWork } from '@relay/telemetry';
import type { SecretBox } from './secret-box.js';

export interface CachedToken {
  accessToken: string;
  /** Epoch ms. */
  expiresAt: number;
  /** Epoch ms when it was obtained from the provider. */
  obtainedAt: number;
  /** The scopes the provider said it carries; absent when it did not say. */
  scopes?: string[];
}

/**
 * A token is refreshed this long before it expires and not handed out for less remaining life:
 * Microsoft's High Volume Email refuses tokens close to expiry (`501 5.5.127`).
 */
export const TOKEN_MARGIN_MS = 10 * 60_000;

/** When a token stops being handed out: TOKEN_MARGIN_MS before expiry, or half way for a short-lived one. */
export function refreshAt(token: CachedToken): number {
  return token.expiresAt - Math.min(TOKEN_MARGIN_MS, (token.expiresAt - token.obtainedAt) / 2);
}

/**
 * Access tokens in this process's memory and in Redis (sealed with the master key), so that all
 * replicas share one token per sender. Redis holds only what can be rebuilt: losing it costs one
 * token request per sender.
 */
export class TokenCache {
  readonly #redis: Redis;
  readonly #box: SecretBox;
  readonly #prefix: string;
  readonly #memory = new Map<string, CachedToken>();
  /** Refreshes this replica runs (it holds their locks): a span and the refresh metrics each. */
  readonly #refreshing = new Map<string, TokenRefreshWork>();

  constructor(redis: Redis, box: SecretBox, prefix: string) {
    this.#redis = redis;
    this.#box = box;
    this.#prefix = prefix;
  }

  tokenKey(sender: string): string {
    return `${this.#prefix}:token:${sender}`;
  }
  lockKey(sender: string): string {
    return `${this.#prefix}:token-lock:${sender}`;
  }

  /** A usable token (before its refreshAt), from memory unless `shared` asks for Redis. */
  async get(sender: string, opts: { shared?: boolean } = {}): Promise<CachedToken | undefined> {
    const now = Date.now();
    const mem = this.#memory.get(sender);
    if (!opts.shared && mem && refreshAt(mem) > now) return mem;
    const text = await this.#redis.get(this.tokenKey(sender));
    if (!text) return undefined;
    const token = JSON.parse(this.#box.openString(text, this.#context(sender))) as CachedToken;
    if (refreshAt(token) <= now) return undefined;
    if (opts.shared) this.#refreshing.get(sender)?.reused();
    this.#memory.set(sender, token);
    return token;
  }

  async set(sender: string, token: CachedToken): Promise<void> {
    this.#refreshing.get(sender)?.obtained();
    this.#memory.set(sender, token);
    const ttl = refreshAt(token) - Date.now();
    if (ttl <= 0) return;
    await this.#redis.set(this.tokenKey(sender), this.#box.sealToString(JSON.stringify(token), this.#context(sender)), 'PX', ttl);
  }

  forget(sender: string): void {
    this.#memory.delete(sender);
  }

  /** Forgets the sender's token here and in Redis (its sign-in changed or it was deleted). */
  async drop(sender: string): Promise<void> {
    this.#memory.delete(sender);
    await this.#redis.del(this.tokenKey(sender));
  }

  /** Takes the refresh lock of a sender across replicas; returns the release function, or undefined when another replica holds it. */
  async lock(sender: string, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
    const owner = randomBytes(12).toString('base64url');
    const ok = await this.#redis.set(this.lockKey(sender), owner, 'PX', ttlMs, 'NX');
    if (ok !== 'OK') return undefined;
    const work = startTokenRefresh(sender);
    this.#refreshing.set(sender, work);
    return async () => {
      work.end();
      if (this.#refreshing.get(sender) === work) this.#refreshing.delete(sender);
      // Delete only our own lock: it may have expired and been taken by another replica.
      await this.#redis.eval(RELEASE, 1, this.lockKey(sender), owner);
    };
  }

  #context(sender: string): string {
    return `token:${this.#prefix}:${sender}`;
  }
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
