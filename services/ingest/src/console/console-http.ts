import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RelayConfig } from '@relay/config';
import { describe, ErrorCode, isRelayError, type RelayError } from '@relay/core';
import type { Logger } from '@relay/telemetry';
import type { PublicRoute } from '../public-http.js';
import { escapeHtml, PAGE_HEADERS } from '../public-http.js';
import { roleOf, type ConsoleApi } from './api.js';
import type { OidcSignIn, PendingSignIn } from './oidc.js';
import { QUEUE_EVENTS_PATH, type QueueEvents } from './queue-events.js';
import type { SignOuts } from './revocations.js';
import { cookieName, newCsrfToken, newSignInId, parseCookies, setCookie, type Person, type Session, type Signer } from './session.js';

/** Largest JSON body the API reads (a sender's settings, a secret of up to 16 KiB). */
export const MAX_API_BODY_BYTES = 64 * 1024;
const SIGN_IN_TTL_MS = 10 * 60_000;
/** How long a console sign-in lasts without `console.session_ttl` (the demo's, for one). */
export const DEFAULT_SIGN_IN_TTL_MS = 8 * 3_600_000;
/** The demo's one-time link works this long after ingest started, and once. */
export const DEMO_LINK_TTL_MS = 15 * 60_000;

export interface ConsoleHttpOptions {
  config: () => RelayConfig;
  api: ConsoleApi;
  signer: Signer;
  /** Sign-outs every ingest replica honours (a signed cookie alone stays valid until it expires). */
  signOuts: SignOuts;
  /** RELAY_PUBLIC_URL: the console's origin, checked against Origin on every change. */
  publicUrl: string;
  /** Cookies are Secure (served over TLS, or RELAY_PUBLIC_URL is https). */
  secure: boolean;
  /** OpenID Connect sign-in, when relay.yaml has `console:` (read at each sign-in: the file may change). */
  oidc: () => OidcSignIn | undefined;
  /** The demo's one-time sign-in token (RELAY_CONSOLE_DEMO_TOKEN), honoured only without `console:`. */
  demoToken: string | undefined;
  logger: Logger;
  /** RELAY_TRACE_URL_TEMPLATE: the console links a message to its trace there. */
  traceUrlTemplate?: string;
  /** Static assets (the built front end), tried for GET requests the console does not answer. */
  assets?: PublicRoute;
  /** The Queues page's live figures (server-sent events at /api/events/queues). */
  queueEvents?: QueueEvents;
  now?: () => number;
}

const STATUS: Record<string, number> = {
  [ErrorCode.InvalidArgument]: 400,
  [ErrorCode.Unauthenticated]: 401,
  [ErrorCode.PermissionDenied]: 403,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.AlreadyExists]: 409,
  [ErrorCode.Aborted]: 409,
  [ErrorCode.FailedPrecondition]: 412,
  [ErrorCode.ResourceExhausted]: 429,
  [ErrorCode.Unavailable]: 503,
};

/**
 * The console's server side on ingest's public port: sign-in (OpenID Connect, or the demo's
 * one-time link), the session cookie, CSRF checks, and the JSON API at `/api/<Method>`.
 */
export function createConsoleRoutes(opts: ConsoleHttpOptions): PublicRoute {
  const now = opts.now ?? Date.now;
  const startedAt = now();
  let demoUsed = false;
  const sessionCookie = cookieName('relay_session', opts.secure);
  const pendingCookie = cookieName('relay_signin', opts.secure);
  const origin = new URL(opts.publicUrl).origin;

  const json = (res: ServerResponse, status: number, body: unknown, cookies: string[] = []) => {
    res.writeHead(status, { ...PAGE_HEADERS, 'content-type': 'application/json; charset=utf-8', ...(cookies.length ? { 'set-cookie': cookies } : {}) });
    res.end(JSON.stringify(body));
  };
  const page = (res: ServerResponse, status: number, title: string, text: string, cookies: string[] = [], refreshTo?: string) => {
    const refresh = refreshTo ? `<meta http-equiv="refresh" content="0;url=${escapeHtml(refreshTo)}">` : '';
    res.writeHead(status, { ...PAGE_HEADERS, 'content-type': 'text/html; charset=utf-8', ...(cookies.length ? { 'set-cookie': cookies } : {}) });
    res.end(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">${refresh}<title>Campus Relay: ${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p><p><a href="/">Campus Relay console</a></p></body></html>`,
    );
  };
  /** The signed-in person: a cookie we signed, not expired, and not signed out (here or on another replica). */
  const session = (req: IncomingMessage) => {
    const s = opts.signer.open<Session>('session', parseCookies(req.headers.cookie).get(sessionCookie));
    return s && typeof s.sid === 'string' && typeof s.iat === 'number' && !opts.signOuts.revoked(s) ? s : undefined;
  };
  /** Signs the person in: a fresh session (and CSRF token), then a same-site hop to the console so the Strict cookie is sent. */
  const signIn = async (res: ServerResponse, person: Person) => {
    const ttl = await opts.signOuts.lifetime(opts.config().console?.sessionTtlMs ?? DEFAULT_SIGN_IN_TTL_MS);
    const value: Omit<Session, 'exp'> = { ...person, sid: newSignInId(), iat: opts.signOuts.issuedAt(person.email), csrf: newCsrfToken() };
    const cookies = [
      setCookie(sessionCookie, opts.signer.sign('session', value, ttl), { secure: opts.secure, maxAgeMs: ttl }),
      setCookie(pendingCookie, '', { secure: opts.secure, maxAgeMs: 0, sameSite: 'Lax' }),
    ];
    opts.logger.info({ person: person.email, demo: person.demo ?? false }, 'console sign-in');
    page(res, 200, 'Signed in', `Signed in as ${person.email}.`, cookies, '/');
  };
  /** A change must come from the console itself: same Origin (when sent), and the session's CSRF token. */
  const sameOrigin = (req: IncomingMessage, s: Session) => {
    const o = req.headers.origin;
    if (o !== undefined && o !== origin) return false;
    const given = Buffer.from(String(req.headers['x-csrf-token'] ?? ''));
    const expected = Buffer.from(s.csrf);
    return given.length === expected.length && timingSafeEqual(given, expected);
  };

  return async (req, res, url) => {
    const path = url.pathname;
    const method = req.method ?? 'GET';

    if (path === '/auth/login' && method === 'GET') {
      const oidc = opts.oidc();
      if (!oidc) return (page(res, 404, 'No sign-in configured', 'This relay has no console: section in relay.yaml, so nobody can sign in here.'), true);
      const { url: to, pending } = await oidc.begin();
      res.writeHead(302, {
        ...PAGE_HEADERS,
        location: to,
        'set-cookie': setCookie(pendingCookie, opts.signer.sign('signin', pending, SIGN_IN_TTL_MS), {
          secure: opts.secure,
          maxAgeMs: SIGN_IN_TTL_MS,
          sameSite: 'Lax',
        }),
      });
      res.end();
      return true;
    }
    if (path === '/auth/callback' && method === 'GET') {
      const pending = opts.signer.open<PendingSignIn & { exp: number }>('signin', parseCookies(req.headers.cookie).get(pendingCookie));
      const oidc = opts.oidc();
      if (!oidc || !pending) return (page(res, 400, 'Sign-in not completed', 'This sign-in expired or was started elsewhere. Sign in again.'), true);
      let person: Person;
      try {
        person = await oidc.complete(new URL(`${opts.publicUrl}${path}${url.search}`), pending);
      } catch (err) {
        opts.logger.warn({ err: describe(err) }, 'console sign-in refused');
        return (page(res, 400, 'Sign-in not completed', `The sign-in was not accepted: ${(err as Error).message}`), true);
      }
      await signIn(res, person);
      return true;
    }
    if (path === '/auth/demo' && method === 'GET') {
      const token = url.searchParams.get('token') ?? '';
      const ok =
        opts.demoToken !== undefined &&
        !opts.config().console &&
        !demoUsed &&
        now() - startedAt < DEMO_LINK_TTL_MS &&
        isLoopback(req.socket.remoteAddress) &&
        token.length === opts.demoToken.length &&
        timingSafeEqual(Buffer.from(token), Buffer.from(opts.demoToken));
      if (!ok)
        return (
          page(
            res,
            403,
            'Link not valid',
            'This sign-in link is unknown, expired or was already used, or was opened from another machine. Restart npm run stack for a new one.',
          ),
          true
        );
      demoUsed = true;
      await signIn(res, { email: 'demo@localhost', name: 'Demo admin', groups: [], demo: true });
      return true;
    }
    if (path === '/auth/logout' && method === 'POST') {
      const s = session(req);
      if (s && !sameOrigin(req, s)) return (json(res, 403, { error: 'CSRF check failed: send the x-csrf-token header from /api/session' }), true);
      if (s) {
        try {
          await opts.signOuts.revoke(s.sid, s.exp);
        } catch (err) {
          // The cookie stays: signed out here only, a copy of it would still work elsewhere.
          opts.logger.error({ err: describe(err), person: s.email }, 'console sign-out not recorded');
          return (json(res, 503, { error: 'sign-out not recorded (the broker is unreachable); try again' }), true);
        }
        opts.logger.info({ person: s.email }, 'console sign-out');
      }
      json(res, 200, { signedIn: false }, [setCookie(sessionCookie, '', { secure: opts.secure, maxAgeMs: 0 })]);
      return true;
    }
    if (path === '/auth/logout-everywhere' && method === 'POST') {
      const s = session(req);
      if (!s) return (json(res, 401, { error: 'not signed in' }), true);
      if (!sameOrigin(req, s)) return (json(res, 403, { error: 'CSRF check failed: send the x-csrf-token header from /api/session' }), true);
      let body: { email?: unknown };
      try {
        body = ((await readJson(req, 1024)) ?? {}) as { email?: unknown };
      } catch (err) {
        return (json(res, 400, { error: (err as Error).message }), true);
      }
      const email = body.email === undefined ? s.email : body.email;
      if (typeof email !== 'string' || email.length > 320 || !/^[^@\s]+@[^@\s]+$/.test(email))
        return (json(res, 400, { error: 'email: an email address (or leave it out for yourself)' }), true);
      const self = email.toLowerCase() === s.email.toLowerCase();
      if (!self && roleOf(s, opts.config()).kind !== 'admin') return (json(res, 403, { error: 'email: only an admin signs another person out' }), true);
      try {
        await opts.signOuts.revokePerson(email);
      } catch (err) {
        opts.logger.error({ err: describe(err), person: s.email }, 'console sign-out everywhere not recorded');
        return (json(res, 503, { error: 'sign-out not recorded (the broker is unreachable); try again' }), true);
      }
      opts.logger.info({ person: s.email, signed_out: email }, 'console sign-out everywhere');
      json(res, 200, { signedOut: email }, self ? [setCookie(sessionCookie, '', { secure: opts.secure, maxAgeMs: 0 })] : []);
      return true;
    }
    if (path === '/api/session' && method === 'GET') {
      const s = session(req);
      const c = opts.config().console;
      const signIn = c ? '/auth/login' : undefined;
      if (!s) return (json(res, 200, { signedIn: false, signIn, demo: !c && opts.demoToken !== undefined }), true);
      const role = roleOf(s, opts.config());
      json(res, 200, {
        signedIn: true,
        email: s.email,
        name: s.name,
        role: role.kind,
        senders: role.kind === 'owner' ? role.senders : [],
        csrf: s.csrf,
        contact: c?.contact ?? (c ? c.admins.join(', ') : ''),
        ...(opts.traceUrlTemplate ? { traceUrlTemplate: opts.traceUrlTemplate } : {}),
      });
      return true;
    }
    if (path === QUEUE_EVENTS_PATH && opts.queueEvents) {
      if (method !== 'GET') return (json(res, 405, { error: `${method} not allowed: ${QUEUE_EVENTS_PATH} is GET (an event stream)` }), true);
      const s = session(req);
      if (!s) return (json(res, 401, { error: 'not signed in', signIn: opts.config().console ? '/auth/login' : undefined }), true);
      if (req.headers.origin !== undefined && req.headers.origin !== origin) return (json(res, 403, { error: 'Origin is not the console' }), true);
      opts.queueEvents.serve(res, s, () => roleOf(s, opts.config()));
      return true;
    }
    if (path.startsWith('/api/')) {
      if (method !== 'POST') return (json(res, 405, { error: `${method} not allowed: API calls are POST with a JSON body` }), true);
      const s = session(req);
      if (!s) return (json(res, 401, { error: 'not signed in', signIn: opts.config().console ? '/auth/login' : undefined }), true);
      if (!sameOrigin(req, s))
        return (json(res, 403, { error: 'CSRF check failed: send the x-csrf-token header from /api/session, from the console origin' }), true);
      if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return (json(res, 415, { error: 'content-type: application/json required' }), true);
      let body: unknown;
      try {
        body = await readJson(req, MAX_API_BODY_BYTES);
      } catch (err) {
        return (json(res, 400, { error: (err as Error).message }), true);
      }
      try {
        const out = await opts.api.call(s, roleOf(s, opts.config()), path.slice('/api/'.length), body);
        json(res, 200, out);
      } catch (err) {
        if (!isRelayError(err)) throw err;
        const status = STATUS[(err as RelayError).code] ?? 500;
        if (status === 500) opts.logger.error({ err: describe(err), call: path }, 'console call failed');
        json(res, status, { error: status === 500 ? 'internal error' : err.message, code: err.code });
      }
      return true;
    }
    if ((method === 'GET' || method === 'HEAD') && opts.assets) return opts.assets(req, res, url);
    return false;
  };
}

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new Error(`request body larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error(`request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new Error('request body is not valid JSON');
  }
}
