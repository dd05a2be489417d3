import { AuthError, ConfidentialClientApplication, LogLevel, type AuthenticationResult, type Configuration } from '@azure/msal-node';
import { OAuth2Client } from 'google-auth-library';
import type { SmtpAuthConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import { googleServiceAccountToken } from './google-service-account.js';
import { diagnoseHttps } from '@relay/mail';

export type OAuth2Auth = Extract<SmtpAuthConfig, { type: 'oauth2' }>;

/**
 * What a token is fetched for: an oauth2 SMTP auth, or a Graph sender presented as a Microsoft
 * application (client_credentials, or refresh_token for delegated Mail.Send) with its own scopes
 * (see graph-auth.ts). `optionalScopes` (among `scopes`) were added to the sign-in later (IMAP
 * for copy_to_sent or feedback.imap, Mail.ReadWrite for feedback.graph): a refresh token from an
 * older sign-in lacks them, and is then refreshed without them so that sending goes on.
 */
export type TokenAuth = OAuth2Auth & { scopes?: readonly string[]; optionalScopes?: readonly string[] };

/** Scopes from DESIGN.md: app-only SMTP, delegated SMTP (+ offline_access for a refresh token), Gmail. */
export const SCOPES = {
  microsoftAppOnlySmtp: ['https://outlook.office365.com/.default'],
  microsoftDelegatedSmtp: ['https://outlook.office.com/SMTP.Send', 'offline_access'],
  /** Delegated SMTP for a sender whose mailbox is also opened over IMAP (copy_to_sent, feedback.imap): one token for both. */
  microsoftDelegatedSmtpImap: ['https://outlook.office.com/SMTP.Send', 'https://outlook.office.com/IMAP.AccessAsUser.All', 'offline_access'],
  microsoftDelegatedImap: 'https://outlook.office.com/IMAP.AccessAsUser.All',
  google: ['https://mail.google.com/'],
  graphAppOnly: ['https://graph.microsoft.com/.default'],
} as const;

export const MICROSOFT_AUTHORITY = 'https://login.microsoftonline.com';
export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
export const GOOGLE_AUTHORIZE_URL = 'https://accounts.google.com/o/oauth2/v2/auth';

export interface FetchedToken {
  accessToken: string;
  expiresAt: Date;
  /** Set when the provider handed out a new refresh token (rotation): persist it. */
  refreshToken?: string;
  /** The scopes the provider says the access token carries (Microsoft's `scope` answer), when it says. */
  scopes?: string[];
}

/** The sender has no usable grant: someone must sign in again (BeginConsent). Not fixed by retrying soon. */
export class ConsentRequiredError extends RelayError {
  override name = 'ConsentRequiredError';
  constructor(sender: string, providerText: string, options?: { cause?: unknown }) {
    super(
      ErrorCode.FailedPrecondition,
      `sender "${sender}" needs consent: the provider refused its refresh token (${providerText}); press "Authenticate with MFA" (AdminService.BeginConsent) and sign in as the mailbox`,
      options,
    );
  }
}

export function isConsentRequiredError(err: unknown): err is ConsentRequiredError {
  return err instanceof ConsentRequiredError;
}

/** Errors that mean the stored grant is dead rather than the provider being briefly unwell. */
const DEAD_GRANT = new Set(['invalid_grant', 'interaction_required', 'consent_required', 'login_required', 'no_tokens_found']);
const BAD_CLIENT = new Set(['invalid_client', 'unauthorized_client']);

export function msalAuthority(auth: OAuth2Auth): { authority: string; knownAuthorities: string[] } {
  const base = auth.authorityUrl ?? MICROSOFT_AUTHORITY;
  // Listing the host as known makes MSAL skip instance discovery against login.microsoftonline.com,
  // which matters for other clouds and for the local test double.
  return { authority: `${base}/${auth.tenantId ?? 'organizations'}`, knownAuthorities: [new URL(base).host] };
}

/**
 * How the application proves itself to Entra ID: a client secret, or a client assertion MSAL signs
 * with the certificate's key (PS256, x5t#S256 = the SHA-256 thumbprint; x5c = the certificate, for
 * apps trusted by subject name and issuer).
 */
export function msalCredential(auth: OAuth2Auth): Pick<NonNullable<Configuration['auth']>, 'clientSecret' | 'clientCertificate'> {
  const cert = auth.clientCertificate;
  if (cert) return { clientCertificate: { thumbprintSha256: cert.thumbprintSha256, privateKey: cert.privateKey.reveal(), x5c: cert.certificatePem } };
  return auth.clientSecret ? { clientSecret: auth.clientSecret.reveal() } : {};
}

function msalApp(auth: OAuth2Auth): ConfidentialClientApplication {
  const config: Configuration = {
    auth: {
      clientId: auth.clientId,
      ...msalCredential(auth),
      ...msalAuthority(auth),
    },
    system: { loggerOptions: { logLevel: LogLevel.Error, piiLoggingEnabled: false, loggerCallback: () => {} } },
  };
  return new ConfidentialClientApplication(config);
}

/** A client application for the authorization code redemption (BeginConsent's callback). */
export function microsoftApp(auth: OAuth2Auth): ConfidentialClientApplication {
  return msalApp(auth);
}

/**
 * Asks the provider for a new access token. `refreshToken` is the stored one for refresh_token
 * flows. Errors: ConsentRequiredError (grant dead), FailedPrecondition (app misconfigured),
 * Unavailable (provider unreachable or failing; retry later).
 */
export async function fetchToken(sender: string, auth: TokenAuth, refreshToken: string | undefined): Promise<FetchedToken> {
  if (auth.flow === 'refresh_token' && !refreshToken) {
    throw new ConsentRequiredError(sender, 'no refresh token is stored yet');
  }
  try {
    if (auth.flow === 'service_account') return await googleServiceAccountToken(sender, auth);
    if (auth.provider === 'google') return await googleRefresh(auth, refreshToken!);
    if (auth.flow === 'client_credentials') return await microsoftClientCredentials(auth);
    return await microsoftRefresh(auth, refreshToken!);
  } catch (err) {
    const e = classify(sender, err, auth);
    if (e.code !== ErrorCode.Unavailable) throw e;
    // The library says only that the request failed: find out where the way to the provider breaks.
    const endpoint = auth.provider === 'google' ? (auth.tokenUrl ?? GOOGLE_TOKEN_URL) : (auth.authorityUrl ?? MICROSOFT_AUTHORITY);
    const broken = await diagnoseHttps(endpoint);
    if (!broken) throw e;
    throw new RelayError(ErrorCode.Unavailable, `sender "${sender}": cannot reach the identity platform at ${broken.host}: ${broken.cause}; ${broken.remedy}`, {
      cause: err,
    });
  }
}

async function microsoftClientCredentials(auth: TokenAuth): Promise<FetchedToken> {
  // Our own cache (Redis, encrypted) decides when to refresh; MSAL's in-memory one must not answer.
  const res = await msalApp(auth).acquireTokenByClientCredential({ scopes: [...(auth.scopes ?? SCOPES.microsoftAppOnlySmtp)], skipCache: true });
  return fromMsal(res);
}

async function microsoftRefresh(auth: TokenAuth, refreshToken: string): Promise<FetchedToken> {
  const scopes = [...(auth.scopes ?? SCOPES.microsoftDelegatedSmtp)];
  try {
    return await microsoftRefreshFor(auth, refreshToken, scopes);
  } catch (err) {
    // A refresh token from a sign-in that did not ask for IMAP or Mail.ReadWrite (before
    // copy_to_sent, feedback.imap or feedback.graph was set): sending goes on with what it was
    // granted; the token then lacks the scope, which the reading side reports with its remedy
    // (see imap-scope.ts and graph-read-scope.ts).
    const answer = providerAnswer(err);
    const optional = auth.optionalScopes ?? [];
    if (!scopes.some((s) => optional.includes(s)) || !answer || !DEAD_GRANT.has(answer.error)) throw err;
    return await microsoftRefreshFor(
      auth,
      refreshToken,
      scopes.filter((s) => !optional.includes(s)),
    );
  }
}

async function microsoftRefreshFor(auth: TokenAuth, refreshToken: string, scopes: string[]): Promise<FetchedToken> {
  // MSAL returns no refresh token in AuthenticationResult; it keeps the (possibly rotated) one in
  // its token cache. A fresh application per refresh has an empty cache, so the only RefreshToken
  // entry in its serialization after the call is the one the provider just issued.
  const app = msalApp(auth);
  const res = await app.acquireTokenByRefreshToken({ scopes, refreshToken, forceCache: true });
  const rotated = refreshTokenFromCache(app.getTokenCache().serialize());
  return { ...fromMsal(res), ...(rotated && rotated !== refreshToken ? { refreshToken: rotated } : {}) };
}

/** The refresh token in a serialized MSAL cache, if exactly one is there. */
export function refreshTokenFromCache(serialized: string): string | undefined {
  const cache = JSON.parse(serialized || '{}') as { RefreshToken?: Record<string, { secret?: string }> };
  const secrets = Object.values(cache.RefreshToken ?? {})
    .map((e) => e.secret)
    .filter((s): s is string => typeof s === 'string' && s.length > 0);
  return secrets.length === 1 ? secrets[0] : undefined;
}

function fromMsal(res: AuthenticationResult | null): FetchedToken {
  if (!res?.accessToken) throw new RelayError(ErrorCode.Unavailable, 'the identity platform answered without an access token');
  return { accessToken: res.accessToken, expiresAt: res.expiresOn ?? new Date(Date.now() + 3_600_000), ...(res.scopes.length ? { scopes: res.scopes } : {}) };
}

async function googleRefresh(auth: OAuth2Auth, refreshToken: string): Promise<FetchedToken> {
  const client = new OAuth2Client({
    clientId: auth.clientId,
    ...(auth.clientSecret ? { clientSecret: auth.clientSecret.reveal() } : {}),
    endpoints: { oauth2TokenUrl: auth.tokenUrl ?? GOOGLE_TOKEN_URL },
  });
  client.setCredentials({ refresh_token: refreshToken });
  const { credentials } = await client.refreshAccessToken();
  if (!credentials.access_token) throw new RelayError(ErrorCode.Unavailable, 'Google answered without an access token');
  return {
    accessToken: credentials.access_token,
    expiresAt: new Date(credentials.expiry_date ?? Date.now() + 3_600_000),
    ...(credentials.refresh_token && credentials.refresh_token !== refreshToken ? { refreshToken: credentials.refresh_token } : {}),
  };
}

interface ProviderAnswer {
  error: string;
  description: string;
}

/** The OAuth error of an MSAL or gaxios failure, read from their fields (never from message text). */
function providerAnswer(err: unknown): ProviderAnswer | undefined {
  if (err instanceof AuthError) {
    return { error: err.errorCode, description: err.errorMessage || err.subError || err.errorCode };
  }
  const data = (err as { response?: { data?: { error?: unknown; error_description?: unknown } } } | undefined)?.response?.data;
  if (data && typeof data.error === 'string') {
    return { error: data.error, description: typeof data.error_description === 'string' ? data.error_description : data.error };
  }
  return undefined;
}

function classify(sender: string, err: unknown, auth?: OAuth2Auth): RelayError {
  if (err instanceof RelayError) return err;
  const answer = providerAnswer(err);
  const text = answer ? firstLine(answer.description) : err instanceof Error ? err.message : String(err);
  if (answer && DEAD_GRANT.has(answer.error)) return new ConsentRequiredError(sender, text, { cause: err });
  if (answer && BAD_CLIENT.has(answer.error)) {
    return new RelayError(
      ErrorCode.FailedPrecondition,
      `sender "${sender}": the identity platform refused the application's credentials (${text}); ${
        auth?.clientCertificate
          ? `check client_id, and that the certificate (SHA-1 thumbprint ${auth.clientCertificate.thumbprint}) is uploaded to the app registration under Certificates & secrets`
          : 'check client_id and client_secret'
      }`,
      { cause: err },
    );
  }
  return new RelayError(ErrorCode.Unavailable, `sender "${sender}": token request failed (${text})`, { cause: err });
}

function firstLine(s: string): string {
  return s.split(/\r?\n/)[0]!.trim();
}

/** What redeeming an authorization code gives: the refresh token, and who signed in. */
export interface RedeemedCode {
  refreshToken: string;
  /**
   * The signed-in account from the id token of the token endpoint's own answer (over TLS, so it
   * needs no signature check): Microsoft's `preferred_username`, Google's verified `email`.
   */
  account: string | undefined;
}

/** Redeems an authorization code (with its PKCE verifier) for a refresh token: the end of BeginConsent. */
export async function redeemCode(auth: OAuth2Auth, req: { code: string; verifier: string; redirectUri: string; scopes: string[] }): Promise<RedeemedCode> {
  try {
    if (auth.provider === 'google') {
      const client = new OAuth2Client({
        clientId: auth.clientId,
        ...(auth.clientSecret ? { clientSecret: auth.clientSecret.reveal() } : {}),
        redirectUri: req.redirectUri,
        endpoints: { oauth2TokenUrl: auth.tokenUrl ?? GOOGLE_TOKEN_URL },
      });
      const { tokens } = await client.getToken({ code: req.code, codeVerifier: req.verifier, redirect_uri: req.redirectUri });
      if (!tokens.refresh_token)
        throw new RelayError(ErrorCode.FailedPrecondition, 'Google returned no refresh token (access_type=offline and prompt=consent are needed)');
      const claims = tokens.id_token ? jwtClaims(tokens.id_token) : {};
      // Only an address Google says it verified names the account.
      const email = claims.email_verified === true ? claims.email : undefined;
      return { refreshToken: tokens.refresh_token, account: typeof email === 'string' ? email : undefined };
    }
    const app = msalApp(auth);
    const res = await app.acquireTokenByCode({ code: req.code, codeVerifier: req.verifier, redirectUri: req.redirectUri, scopes: req.scopes });
    const rt = refreshTokenFromCache(app.getTokenCache().serialize());
    if (!rt) throw new RelayError(ErrorCode.FailedPrecondition, 'the identity platform returned no refresh token (is offline_access granted?)');
    const username = res?.idTokenClaims ? (res.idTokenClaims as Record<string, unknown>).preferred_username : undefined;
    return { refreshToken: rt, account: typeof username === 'string' ? username : undefined };
  } catch (err) {
    throw classify('consent', err, auth);
  }
}

/** The payload of a JWT, unverified: only for a token taken straight from the token endpoint. */
function jwtClaims(jwt: string): Record<string, unknown> {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}
