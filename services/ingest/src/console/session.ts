import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/** Someone signed in to the console, as the session cookie carries them. */
export interface Person {
  email: string;
  name: string;
  /** The admin groups (of console.admin_groups) the identity provider said they are in. */
  groups: string[];
  /** Signed in with the demo's one-time link (an admin). */
  demo?: boolean;
}

export interface Session extends Person {
  /** This sign-in's id: what a sign-out revokes (see revocations.ts); a cookie without one is refused. */
  sid: string;
  /** When it was made (ms): "sign out everywhere" ends the person's sign-ins made until then. */
  iat: number;
  /** The CSRF token every change must carry in `x-csrf-token`. */
  csrf: string;
  exp: number;
}

/** Largest cookie value read; anything larger is not one of ours. */
export const MAX_COOKIE_BYTES = 4096;

/**
 * Signed (HMAC-SHA256), expiring values for cookies: the session and a sign-in in progress. The
 * key is derived from a secret every ingest replica holds, so any replica reads any cookie; a
 * value made for one purpose is refused for another.
 */
export function createSigner(secret: Buffer, now: () => number = Date.now) {
  const key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'relay-console-cookie-v1', 32));
  const mac = (purpose: string, body: string) => createHmac('sha256', key).update(`${purpose}.${body}`).digest();
  return {
    sign(purpose: string, value: object, ttlMs: number): string {
      const body = Buffer.from(JSON.stringify({ ...value, exp: now() + ttlMs })).toString('base64url');
      return `${body}.${mac(purpose, body).toString('base64url')}`;
    },
    /** The value, or undefined when forged, for another purpose, expired or malformed. */
    open<T extends { exp: number }>(purpose: string, token: string | undefined): T | undefined {
      if (!token || token.length > MAX_COOKIE_BYTES) return undefined;
      const [body, sig, extra] = token.split('.');
      if (!body || !sig || extra !== undefined) return undefined;
      const expected = mac(purpose, body);
      const given = Buffer.from(sig, 'base64url');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
      try {
        const value = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as T;
        return typeof value.exp === 'number' && value.exp > now() ? value : undefined;
      } catch {
        return undefined;
      }
    },
  };
}
export type Signer = ReturnType<typeof createSigner>;

export function newCsrfToken(): string {
  return randomBytes(24).toString('base64url');
}

/** A sign-in's id: random, base64url, safe as a KV key. */
export function newSignInId(): string {
  return randomBytes(18).toString('base64url');
}

/** Cookies of a request header, bounded: at most 50, names and values as given. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';').slice(0, 50)) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

export interface CookieOptions {
  secure: boolean;
  maxAgeMs: number;
  /**
   * Strict (the default) for the session. Lax only for the sign-in in progress: the identity
   * provider's redirect back is a cross-site navigation, which carries no Strict cookie.
   */
  sameSite?: 'Strict' | 'Lax';
}

/** Cookies are HttpOnly, SameSite, Path=/; Secure (and the __Host- prefix) over TLS. */
export function cookieName(base: string, secure: boolean): string {
  return secure ? `__Host-${base}` : base;
}

export function setCookie(name: string, value: string, o: CookieOptions): string {
  const parts = [`${name}=${value}`, 'Path=/', 'HttpOnly', `SameSite=${o.sameSite ?? 'Strict'}`, `Max-Age=${Math.max(0, Math.floor(o.maxAgeMs / 1000))}`];
  if (o.secure) parts.push('Secure');
  return parts.join('; ');
}
