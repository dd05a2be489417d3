import { constants, createHash, createSign, createVerify, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { testCa } from './tls.js';

/** One request to the token endpoint, as the fake saw it (secrets left out). */
export interface TokenRequest {
  tenant: string;
  grantType: string;
  clientId: string;
  scope: string;
  at: Date;
  /** How the application authenticated: a client secret, or a signed client assertion (certificate). */
  clientAuth: 'secret' | 'assertion';
  /** A client assertion's JOSE header, once it was verified. */
  assertionHeader?: Record<string, unknown>;
  /** The JWT bearer grant's (RFC 7523) claims, once its signature was verified: iss, sub, scope, aud, iat, exp. */
  bearerClaims?: Record<string, unknown>;
}

/** A Google service account the fake knows, for the JWT bearer grant (domain-wide delegation). */
export interface FakeServiceAccount {
  /** PEM of the public key of the account's key (its assertions are verified with it). */
  publicKeyPem: string;
  /** Scopes a Workspace admin granted it by domain-wide delegation; none: `unauthorized_client`. */
  delegatedScopes?: string[];
  /** The domain's users it may act as (sub); absent: any address. Others get `invalid_grant` Invalid email or User ID. */
  users?: string[];
}

/** An error the token endpoint answers with, the way the Microsoft identity platform does. */
export type IdentityFailure = 'invalid_grant' | 'invalid_client';

export interface IdentityFakeOptions {
  /** Accepted applications: client id → client secret. Any other pair gets AADSTS7000215. */
  clients: Record<string, string>;
  /**
   * Applications with a certificate credential: client id → the certificate's PEM. Their token
   * requests must carry a client assertion (private_key_jwt) signed with its key, naming it by
   * x5t#S256 or x5t, addressed (aud) to the token endpoint, with iss = sub = the client id.
   */
  certificates?: Record<string, string>;
  /** Lifetime of issued access tokens. Default 3600 s. */
  expiresInSeconds?: number;
  /** Rotate refresh tokens: every refresh_token grant returns a new one and retires the old. Default true. */
  rotateRefreshTokens?: boolean;
  /** Delay before the token endpoint answers (to widen race windows). */
  tokenDelayMs?: number;
  /**
   * Application permissions per client id. Client-credentials tokens of a listed client are
   * unsigned JWTs carrying them as `roles` and the client id as `appid` (as Entra ID's Graph
   * tokens do); others stay opaque.
   */
  appRoles?: Record<string, string[]>;
  /** Group ids per signed-in account, in the `groups` claim of OpenID Connect sign-ins (those that send a nonce). */
  groups?: Record<string, string[]>;
  /**
   * Google service accounts by client_email, for the JWT bearer grant at `/token` (as
   * oauth2.googleapis.com/token): the assertion's RS256 signature, aud (this `/token` URL), iss, sub
   * and time window are checked, and the scope against the domain-wide delegation granted.
   */
  serviceAccounts?: Record<string, FakeServiceAccount>;
}

export interface IdentityFake {
  /** The authority base, e.g. https://127.0.0.1:PORT; use it as `authority_url`. */
  url: string;
  /** Every token endpoint request, oldest first. */
  tokenRequests: TokenRequest[];
  /** True for an access token this fake issued and has not revoked. */
  acceptsAccessToken(token: string): boolean;
  /**
   * Whom an access token this fake issued speaks for (empty for app-only tokens) and the scopes
   * it carries; undefined for a token it did not issue, or revoked or expired.
   */
  accessTokenGrant(token: string): { user: string; scopes: string[] } | undefined;
  /** Every access token issued, including revoked ones. */
  issuedAccessTokens(): string[];
  /** Every refresh token issued (current and retired). */
  issuedRefreshTokens(): string[];
  /**
   * A refresh token valid for `clientId`, as if a user had consented before (to import one).
   * With `scopes`, the consent covered only those: a refresh asking for more is refused
   * (AADSTS65001), as for a token obtained before a permission was added to the sign-in.
   */
  issueRefreshToken(clientId: string, user?: string, scopes?: string[]): string;
  /** Makes every following token request fail with `failure` until cleared with undefined. */
  failWith(failure: IdentityFailure | undefined): void;
  /** Revokes every access token issued so far (the SMTP server then rejects them). */
  revokeAccessTokens(): void;
  /**
   * The account the following sign-ins at the authorize endpoint end up as, whatever login_hint
   * said (a user who picks another account); undefined goes back to login_hint.
   */
  signInAs(account: string | undefined): void;
  /** What the id tokens say of the e-mail address (`email_verified`): true by default; undefined leaves the claim out. */
  emailVerified(verified: boolean | undefined): void;
  /** Sets the scopes granted to a service account by domain-wide delegation (Google Admin console). */
  delegate(clientEmail: string, scopes: string[]): void;
  close(): Promise<void>;
}

interface CodeGrant {
  clientId: string;
  redirectUri: string;
  challenge: string;
  scope: string;
  user: string;
  expiresAt: number;
  /** OpenID Connect sign-ins (the console's) send one: their ID token is then signed (RS256) and carries it. */
  nonce: string | undefined;
  tenant: string;
}

/**
 * A stand-in for the Microsoft identity platform (login.microsoftonline.com) over HTTPS with the
 * test CA's certificate: OpenID discovery, the v2.0 token endpoint (client_credentials,
 * refresh_token and authorization_code with PKCE S256) and the authorize endpoint, which signs
 * the user in at once and redirects back with a code. Tokens are opaque random strings the fake
 * remembers, so a test SMTP server can accept only tokens it issued.
 * Processes that talk to it must trust the test CA (NODE_EXTRA_CA_CERTS=testCa().caFile).
 */
export async function startIdentityFake(opts: IdentityFakeOptions): Promise<IdentityFake> {
  const ca = testCa();
  const expiresIn = opts.expiresInSeconds ?? 3600;
  const rotate = opts.rotateRefreshTokens ?? true;
  const accessTokens = new Map<string, { expiresAt: number; revoked: boolean; user: string; scopes: string[] }>();
  // `scopes`: what the sign-in consented to (undefined: anything), which the refreshes stay within.
  const refreshTokens = new Map<string, { clientId: string; user: string; retired: boolean; scopes: string[] | undefined }>();
  const codes = new Map<string, CodeGrant>();
  const tokenRequests: TokenRequest[] = [];
  let failure: IdentityFailure | undefined;
  let signedIn: string | undefined;
  let verified: boolean | undefined = true;
  let base = '';
  // The key OpenID Connect ID tokens are signed with, published at the jwks_uri.
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomBytes(8).toString('hex');

  const newToken = (kind: string) => `${kind}-${randomBytes(24).toString('base64url')}`;

  const server = createServer({ cert: ca.certPem, key: ca.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => json(res, 500, { error: 'server_error', error_description: String(err) }));
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', base);
    const parts = url.pathname.split('/').filter(Boolean);
    const tenant = parts[0] ?? 'common';
    const rest = parts.slice(1).join('/');
    if (req.method === 'GET' && (rest === 'v2.0/.well-known/openid-configuration' || rest === '.well-known/openid-configuration')) {
      return json(res, 200, {
        issuer: `${base}/${tenant}/v2.0`,
        authorization_endpoint: `${base}/${tenant}/oauth2/v2.0/authorize`,
        token_endpoint: `${base}/${tenant}/oauth2/v2.0/token`,
        end_session_endpoint: `${base}/${tenant}/oauth2/v2.0/logout`,
        jwks_uri: `${base}/${tenant}/discovery/v2.0/keys`,
        response_types_supported: ['code', 'id_token', 'code id_token', 'token id_token', 'token'],
        scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
        token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['plain', 'S256'],
      });
    }
    if (req.method === 'GET' && rest === 'discovery/v2.0/keys') {
      return json(res, 200, { keys: [{ ...signing.publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' }] });
    }
    if (req.method === 'GET' && rest === 'discovery/instance') {
      const host = new URL(base).host;
      return json(res, 200, {
        tenant_discovery_endpoint: `${base}/${tenant}/v2.0/.well-known/openid-configuration`,
        metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
      });
    }
    if (req.method === 'GET' && rest === 'oauth2/v2.0/authorize') return authorize(tenant, url, res);
    if (req.method === 'POST' && (rest === 'oauth2/v2.0/token' || url.pathname === '/token')) {
      const form = new URLSearchParams(await body(req));
      return token(tenant, form, req, res);
    }
    json(res, 404, { error: 'not_found', error_description: `no route ${req.method} ${url.pathname}` });
  }

  function authorize(tenant: string, url: URL, res: ServerResponse) {
    const q = url.searchParams;
    const redirectUri = q.get('redirect_uri');
    const clientId = q.get('client_id') ?? '';
    if (!redirectUri || !(clientId in opts.clients || clientId in (opts.certificates ?? {})))
      return json(res, 400, { error: 'invalid_request', error_description: 'AADSTS700016: unknown application or redirect_uri' });
    if (q.get('response_type') !== 'code' || q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) {
      return json(res, 400, { error: 'invalid_request', error_description: 'AADSTS50148: PKCE S256 code_challenge required' });
    }
    const code = newToken('code');
    codes.set(code, {
      clientId,
      redirectUri,
      challenge: q.get('code_challenge')!,
      scope: q.get('scope') ?? '',
      user: signedIn ?? q.get('login_hint') ?? 'user@campus.example',
      expiresAt: Date.now() + 600_000,
      nonce: q.get('nonce') ?? undefined,
      tenant,
    });
    const back = new URL(redirectUri);
    back.searchParams.set('code', code);
    if (q.get('state') !== null) back.searchParams.set('state', q.get('state')!);
    res.writeHead(302, { location: back.toString() }).end();
  }

  async function token(tenant: string, form: URLSearchParams, req: IncomingMessage, res: ServerResponse) {
    let clientId = form.get('client_id') ?? '';
    let secret = form.get('client_secret') ?? '';
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (basic) {
      const [id, sec] = Buffer.from(basic[1]!, 'base64').toString().split(':');
      clientId = decodeURIComponent(id ?? '');
      secret = decodeURIComponent(sec ?? '');
    }
    const grantType = form.get('grant_type') ?? '';
    const scope = form.get('scope') ?? '';
    const assertion = form.get('client_assertion');
    const request: TokenRequest = { tenant, grantType, clientId, scope, at: new Date(), clientAuth: assertion === null ? 'secret' : 'assertion' };
    tokenRequests.push(request);
    if (opts.tokenDelayMs) await new Promise((r) => setTimeout(r, opts.tokenDelayMs));
    if (grantType === JWT_BEARER) return jwtBearer(form, request, res);
    if (assertion !== null) {
      const checked = checkAssertion(tenant, form, assertion);
      if (typeof checked === 'string') return oauthError(res, 401, 'invalid_client', Number(/AADSTS(\d+)/.exec(checked)?.[1] ?? 0), checked);
      clientId = checked.clientId;
      request.clientId = clientId;
      request.assertionHeader = checked.header;
      if (failure === 'invalid_client') return oauthError(res, 401, 'invalid_client', 700027, 'AADSTS700027: Client assertion failed signature validation.');
    } else if (failure === 'invalid_client' || opts.clients[clientId] === undefined || opts.clients[clientId] !== secret) {
      return oauthError(
        res,
        401,
        'invalid_client',
        7000215,
        'AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.',
      );
    }
    if (failure === 'invalid_grant') {
      return oauthError(res, 400, 'invalid_grant', 700082, 'AADSTS700082: The refresh token has expired due to inactivity.');
    }
    let user = '';
    if (grantType === 'client_credentials') {
      return issue(res, scope, undefined, undefined, opts.appRoles?.[clientId], true, clientId);
    } else if (grantType === 'refresh_token') {
      const presented = form.get('refresh_token') ?? '';
      const known = refreshTokens.get(presented);
      if (!known || known.retired || known.clientId !== clientId) {
        return oauthError(res, 400, 'invalid_grant', 70000, 'AADSTS70000: The provided refresh token is invalid or was already used.');
      }
      const beyond = known.scopes ? scopeList(scope).filter((sc) => !OIDC_SCOPES.includes(sc) && !known.scopes!.includes(sc)) : [];
      if (beyond.length > 0) {
        return oauthError(
          res,
          400,
          'invalid_grant',
          65001,
          `AADSTS65001: The user or administrator has not consented to use the application with ID '${clientId}'. Send an interactive authorization request for this user and resource. Scopes not granted: ${beyond.join(' ')}`,
        );
      }
      if (rotate) known.retired = true;
      user = known.user;
      return issue(res, scope, rotate ? newRefresh(clientId, user, known.scopes) : presented, user);
    } else if (grantType === 'authorization_code') {
      const grant = codes.get(form.get('code') ?? '');
      codes.delete(form.get('code') ?? '');
      const verifier = form.get('code_verifier') ?? '';
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      if (
        !grant ||
        grant.expiresAt < Date.now() ||
        grant.clientId !== clientId ||
        grant.redirectUri !== form.get('redirect_uri') ||
        grant.challenge !== challenge
      ) {
        return oauthError(
          res,
          400,
          'invalid_grant',
          70008,
          'AADSTS70008: The provided authorization code or refresh token has expired or was already redeemed.',
        );
      }
      if (grant.nonce !== undefined) return oidcTokens(res, grant);
      // As the real platform: an id token (who signed in) only when the sign-in asked for openid.
      return issue(
        res,
        grant.scope,
        newRefresh(clientId, grant.user, scopeList(grant.scope)),
        grant.user,
        undefined,
        grant.scope.split(' ').includes('openid'),
      );
    }
    return oauthError(res, 400, 'unsupported_grant_type', 70003, `AADSTS70003: grant_type ${grantType} is not supported`);
  }

  /**
   * Verifies a private_key_jwt client assertion as Entra ID does: the certificate named by the
   * header's thumbprint is the one registered for the client, the RS256/PS256 signature is its key's,
   * aud is this token endpoint, iss = sub = client id, and the time window holds. Returns the
   * client id and header, or the AADSTS error text.
   */
  function checkAssertion(tenant: string, form: URLSearchParams, assertion: string): { clientId: string; header: Record<string, unknown> } | string {
    if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
      return 'AADSTS7000216: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
    }
    const [h, p, sig, extra] = assertion.split('.');
    if (!h || !p || !sig || extra !== undefined) return 'AADSTS50027: JWT token is invalid or malformed.';
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
      claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      return 'AADSTS50027: JWT token is invalid or malformed.';
    }
    const clientId = typeof claims.iss === 'string' ? claims.iss : '';
    const formClient = form.get('client_id');
    if (claims.sub !== clientId || (formClient !== null && formClient !== clientId)) {
      return 'AADSTS700023: Client assertion audience claim does not match: iss and sub must both be the client id.';
    }
    const pem = opts.certificates?.[clientId];
    if (!pem) return `AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application ${clientId}.`;
    const cert = new X509Certificate(pem);
    const x5tS256 = createHash('sha256').update(cert.raw).digest('base64url');
    const x5t = createHash('sha1').update(cert.raw).digest('base64url');
    if (header['x5t#S256'] !== x5tS256 && header.x5t !== x5t) {
      return `AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application ${clientId}.`;
    }
    if (header.alg !== 'RS256' && header.alg !== 'PS256') return `AADSTS5002730: unsupported client assertion algorithm ${String(header.alg)}.`;
    const pss = header.alg === 'PS256' ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } : {};
    const valid = createVerify('RSA-SHA256')
      .update(`${h}.${p}`)
      .verify({ key: cert.publicKey, ...pss }, Buffer.from(sig, 'base64url'));
    if (!valid) return 'AADSTS700027: Client assertion failed signature validation.';
    const endpoint = `${base}/${tenant}/oauth2/v2.0/token`;
    if (claims.aud !== endpoint)
      return `AADSTS700021: Client assertion audience claim does not match Realm issuer (aud ${String(claims.aud)}, expected ${endpoint}).`;
    const now = Math.floor(Date.now() / 1000);
    if (typeof claims.exp !== 'number' || claims.exp < now || (typeof claims.nbf === 'number' && claims.nbf > now + 300)) {
      return 'AADSTS700024: Client assertion is not within its valid time range.';
    }
    return { clientId, header };
  }

  /**
   * Google's JWT bearer grant for a service account with domain-wide delegation, checked as Google
   * does, with Google's error answers: the signature is the account's key's (RS256), aud is this
   * token endpoint, the assertion lives at most an hour, sub is a user of the domain, and the
   * scope was granted to the account by domain-wide delegation.
   */
  function jwtBearer(form: URLSearchParams, request: TokenRequest, res: ServerResponse) {
    const googleError = (status: number, error: string, description: string) => json(res, status, { error, error_description: description });
    const [h, p, sig, extra] = (form.get('assertion') ?? '').split('.');
    if (!h || !p || !sig || extra !== undefined) return googleError(400, 'invalid_grant', 'Invalid JWT: malformed assertion.');
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
      claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      return googleError(400, 'invalid_grant', 'Invalid JWT: malformed assertion.');
    }
    const iss = typeof claims.iss === 'string' ? claims.iss : '';
    request.clientId = iss;
    request.clientAuth = 'assertion';
    request.scope = typeof claims.scope === 'string' ? claims.scope : '';
    const account = opts.serviceAccounts?.[iss];
    if (!account) return googleError(400, 'invalid_grant', 'Invalid grant: account not found');
    if (header.alg !== 'RS256') return googleError(400, 'invalid_grant', 'Invalid JWT: alg must be RS256.');
    const valid = createVerify('RSA-SHA256').update(`${h}.${p}`).verify(account.publicKeyPem, Buffer.from(sig, 'base64url'));
    if (!valid) return googleError(400, 'invalid_grant', 'Invalid JWT Signature.');
    request.bearerClaims = claims;
    if (claims.aud !== `${base}/token`) return googleError(400, 'invalid_grant', `Invalid JWT: Failed audience check. The right audience is ${base}/token`);
    const now = Math.floor(Date.now() / 1000);
    const { iat, exp } = claims;
    if (typeof iat !== 'number' || typeof exp !== 'number' || exp - iat > 3600 || exp < now || iat > now + 300) {
      return googleError(
        400,
        'invalid_grant',
        'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
      );
    }
    const sub = typeof claims.sub === 'string' ? claims.sub.toLowerCase() : '';
    if (!sub || (account.users && !account.users.map((u) => u.toLowerCase()).includes(sub))) {
      return googleError(400, 'invalid_grant', 'Invalid email or User ID');
    }
    const scopes = request.scope.split(' ').filter(Boolean);
    const granted = account.delegatedScopes ?? [];
    if (!scopes.length || !scopes.every((sc) => granted.includes(sc))) {
      return googleError(
        401,
        'unauthorized_client',
        'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
      );
    }
    const at = `ya29.${randomBytes(24).toString('base64url')}`;
    accessTokens.set(at, { expiresAt: Date.now() + expiresIn * 1000, revoked: false, user: String(request.bearerClaims?.sub ?? ''), scopes });
    json(res, 200, { access_token: at, expires_in: expiresIn, token_type: 'Bearer' });
  }

  function newRefresh(clientId: string, user: string, scopes?: string[]): string {
    const rt = newToken('rt');
    refreshTokens.set(rt, { clientId, user, retired: false, scopes });
    return rt;
  }

  function issue(res: ServerResponse, scope: string, refreshToken: string | undefined, user?: string, roles?: string[], idToken = true, clientId = '') {
    const at = roles ? appToken(scope, roles, clientId) : user && graphScopes(scope).length ? userGraphToken(scope, user) : newToken('at');
    accessTokens.set(at, {
      expiresAt: Date.now() + expiresIn * 1000,
      revoked: false,
      user: roles ? '' : (user ?? ''),
      scopes: scopeList(scope).filter((sc) => !OIDC_SCOPES.includes(sc)),
    });
    const out: Record<string, unknown> = {
      token_type: 'Bearer',
      scope: scope
        .split(' ')
        .filter((s) => !['offline_access', 'openid', 'profile', 'email'].includes(s))
        .join(' '),
      expires_in: expiresIn,
      ext_expires_in: expiresIn,
      access_token: at,
    };
    if (refreshToken) {
      out.refresh_token = refreshToken;
      const uid = createHash('sha256')
        .update(user ?? '')
        .digest('hex')
        .slice(0, 32);
      out.client_info = Buffer.from(JSON.stringify({ uid, utid: 'tenant' })).toString('base64url');
      const claims = {
        aud: 'fake',
        iss: `${base}/tenant/v2.0`,
        oid: uid,
        tid: 'tenant',
        preferred_username: user,
        email: user,
        ...(verified === undefined ? {} : { email_verified: verified }),
        sub: uid,
        iat: Math.floor(Date.now() / 1000),
        exp: Math.floor(Date.now() / 1000) + expiresIn,
      };
      if (idToken) out.id_token = `${[{ typ: 'JWT', alg: 'none' }, claims].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.')}.`;
    }
    json(res, 200, out);
  }

  /** An OpenID Connect sign-in's answer: an access token and an RS256-signed ID token for the app. */
  function oidcTokens(res: ServerResponse, grant: CodeGrant) {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: `${base}/${grant.tenant}/v2.0`,
      aud: grant.clientId,
      sub: createHash('sha256').update(grant.user).digest('hex').slice(0, 32),
      nonce: grant.nonce,
      iat: now,
      exp: now + expiresIn,
      name: grant.user.split('@')[0],
      preferred_username: grant.user,
      ...(verified === undefined ? {} : { email: grant.user, email_verified: verified }),
      ...(opts.groups?.[grant.user] ? { groups: opts.groups[grant.user] } : {}),
    };
    const input = [{ typ: 'JWT', alg: 'RS256', kid }, claims].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.');
    const signature = createSign('RSA-SHA256').update(input).sign(signing.privateKey).toString('base64url');
    const at = newToken('at');
    accessTokens.set(at, { expiresAt: Date.now() + expiresIn * 1000, revoked: false, user: grant.user, scopes: [] });
    json(res, 200, { token_type: 'Bearer', scope: 'openid profile email', expires_in: expiresIn, access_token: at, id_token: `${input}.${signature}` });
  }

  /** The delegated Graph permissions asked for (`https://graph.microsoft.com/Mail.Send` → Mail.Send). */
  function graphScopes(scope: string): string[] {
    return scope
      .split(' ')
      .filter((sc) => /^https:\/\/graph\.microsoft\.com\/[A-Za-z.]+$/.test(sc) && !sc.endsWith('/.default'))
      .map((sc) => sc.slice('https://graph.microsoft.com/'.length));
  }

  /** A user's (delegated) Graph token: an unsigned JWT with the granted permissions in `scp` and who signed in, as Entra ID's. */
  function userGraphToken(scope: string, user: string): string {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      aud: 'https://graph.microsoft.com',
      iss: `${base}/tenant/v2.0`,
      iat: now,
      exp: now + expiresIn,
      scp: graphScopes(scope).join(' '),
      upn: user,
      preferred_username: user,
      jti: randomBytes(16).toString('base64url'),
    };
    return `${[{ typ: 'JWT', alg: 'none' }, claims].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.')}.sig`;
  }

  function appToken(scope: string, roles: string[], clientId: string): string {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      aud: scope.replace(/\/\.default$/, ''),
      // The application the token was issued to (Entra ID's v1.0 `appid`; v2.0 says `azp`).
      appid: clientId,
      iss: `${base}/tenant/v2.0`,
      iat: now,
      exp: now + expiresIn,
      roles,
      jti: randomBytes(16).toString('base64url'),
    };
    return `${[{ typ: 'JWT', alg: 'none' }, claims].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.')}.sig`;
  }

  function oauthError(res: ServerResponse, statusCode: number, error: string, code: number, description: string) {
    json(res, statusCode, {
      error,
      error_description: description,
      error_codes: [code],
      timestamp: new Date().toISOString(),
      trace_id: randomBytes(8).toString('hex'),
      correlation_id: randomBytes(8).toString('hex'),
    });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: base,
    tokenRequests,
    acceptsAccessToken(t) {
      const a = accessTokens.get(t);
      return !!a && !a.revoked && a.expiresAt > Date.now();
    },
    issuedAccessTokens: () => [...accessTokens.keys()],
    issuedRefreshTokens: () => [...refreshTokens.keys()],
    accessTokenGrant(t) {
      const a = accessTokens.get(t);
      return a && !a.revoked && a.expiresAt > Date.now() ? { user: a.user, scopes: [...a.scopes] } : undefined;
    },
    issueRefreshToken: (clientId, user = 'user@campus.example', scopes) => newRefresh(clientId, user, scopes),
    failWith(f) {
      failure = f;
    },
    revokeAccessTokens() {
      for (const a of accessTokens.values()) a.revoked = true;
    },
    signInAs(account) {
      signedIn = account;
    },
    emailVerified(v) {
      verified = v;
    },
    delegate(clientEmail, scopes) {
      const account = opts.serviceAccounts?.[clientEmail];
      if (!account) throw new Error(`no service account ${clientEmail} in this identity fake`);
      account.delegatedScopes = [...scopes];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** Scopes of the sign-in itself, not of a resource: any refresh may ask for them. */
const OIDC_SCOPES = ['offline_access', 'openid', 'profile', 'email'];

function scopeList(scope: string): string[] {
  return scope.split(' ').filter(Boolean);
}

function json(res: ServerResponse, statusCode: number, payload: unknown) {
  const text = JSON.stringify(payload);
  res
    .writeHead(statusCode, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
    .end(text);
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
