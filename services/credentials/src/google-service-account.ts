import { createSign } from 'node:crypto';
import { ErrorCode, RelayError } from '@relay/core';
import { GOOGLE_TOKEN_URL, SCOPES, type FetchedToken, type OAuth2Auth } from './token-providers.js';

/** RFC 7523's grant type: a signed JWT stands for the authorization grant. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** Google takes assertions valid for at most an hour. */
export const ASSERTION_LIFETIME_S = 3600;
/** Time allowed for Google's token endpoint to answer. */
const TOKEN_TIMEOUT_MS = 30_000;
/** The largest answer read from the token endpoint (its answers are a few hundred bytes). */
const MAX_ANSWER_BYTES = 64 * 1024;

/** Where the admin grants domain-wide delegation, as the Google Admin console names it. */
export const DELEGATION_PATH = 'Google Admin console (admin.google.com): Security → Access and data control → API controls → Domain-wide delegation → Add new';

/**
 * The signed JWT (RS256) a service account presents for a token acting as the mailbox: iss = the
 * service account, sub = the mailbox (domain-wide delegation), scope = Gmail's, aud = the token
 * endpoint, valid for an hour from `now`.
 */
export function serviceAccountAssertion(auth: OAuth2Auth, now = Date.now()): string {
  const sa = auth.serviceAccount;
  if (!sa?.clientEmail) throw new RelayError(ErrorCode.FailedPrecondition, 'the service account key is not loaded (this service does not read secrets)');
  const iat = Math.floor(now / 1000);
  const header = { alg: 'RS256', typ: 'JWT', ...(sa.privateKeyId ? { kid: sa.privateKeyId } : {}) };
  const claims = { iss: sa.clientEmail, sub: auth.user, scope: SCOPES.google.join(' '), aud: tokenUrlOf(auth), iat, exp: iat + ASSERTION_LIFETIME_S };
  const input = [header, claims].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.');
  const signature = createSign('RSA-SHA256').update(input).sign(sa.privateKey.reveal()).toString('base64url');
  return `${input}.${signature}`;
}

export function tokenUrlOf(auth: OAuth2Auth): string {
  return auth.tokenUrl ?? GOOGLE_TOKEN_URL;
}

/**
 * An access token for the mailbox from a service account with domain-wide delegation: the JWT
 * bearer grant at Google's token endpoint. Errors name the cause and the admin's next step:
 * FailedPrecondition (delegation not granted, key refused, mailbox unknown), Unavailable (Google
 * unreachable or failing; retry later).
 */
export async function googleServiceAccountToken(sender: string, auth: OAuth2Auth, now = Date.now()): Promise<FetchedToken> {
  const url = tokenUrlOf(auth);
  const body = new URLSearchParams({ grant_type: JWT_BEARER_GRANT, assertion: serviceAccountAssertion(auth, now) });
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body,
      signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS),
    });
    text = await boundedText(res);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new RelayError(ErrorCode.Unavailable, `sender "${sender}": token request failed (${(err as Error).message}${why ? `: ${why}` : ''})`, {
      cause: err,
    });
  }
  let answer: Record<string, unknown> = {};
  try {
    answer = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Not JSON: a proxy's page, say; the status decides below.
  }
  if (res.ok && typeof answer.access_token === 'string' && answer.access_token) {
    const expiresIn = typeof answer.expires_in === 'number' ? answer.expires_in : 3600;
    return { accessToken: answer.access_token, expiresAt: new Date(Date.now() + expiresIn * 1000) };
  }
  const error = typeof answer.error === 'string' ? answer.error : '';
  const description = typeof answer.error_description === 'string' ? answer.error_description.split(/\r?\n/)[0]!.trim() : '';
  throw serviceAccountError(sender, auth, res.status, error, description);
}

/** Google's refusal of a service account's JWT bearer grant, as the cause and what the admin does next. */
export function serviceAccountError(sender: string, auth: OAuth2Auth, status: number, error: string, description: string): RelayError {
  const email = auth.serviceAccount?.clientEmail ?? 'the service account';
  const said = `${error || `HTTP ${status}`}${description ? `: ${description}` : ''}`;
  const refused = (text: string) => new RelayError(ErrorCode.FailedPrecondition, `sender "${sender}": ${text}`);
  if (error === 'unauthorized_client') {
    const clientId = auth.clientId
      ? `client ID ${auth.clientId}`
      : `the service account's client ID (Google Cloud console: IAM & Admin → Service accounts → ${email} → Unique ID)`;
    return refused(
      `Google has not granted domain-wide delegation to service account ${email} for the scope https://mail.google.com/ (${said}); in the ${DELEGATION_PATH}, enter ${clientId} and the OAuth scope https://mail.google.com/, then Authorize (it can take up to 24 hours to apply)`,
    );
  }
  if (error === 'invalid_grant' && /signature/i.test(description)) {
    return refused(
      `Google refused the signature of service account ${email} (${said}): its key was deleted or disabled, or is not this account's; create a key under IAM & Admin → Service accounts → ${email} → Keys → Add key → Create new key → JSON, and configure it`,
    );
  }
  if (error === 'invalid_grant' && /email|user/i.test(description)) {
    return refused(
      `Google does not know the mailbox ${auth.user} (${said}); smtp.auth.user must be the primary address of an existing user in the Workspace domain that granted the delegation`,
    );
  }
  if (error === 'invalid_grant' && /iat|exp|timeframe|short-lived/i.test(description)) {
    return refused(`Google refused the token request's time window (${said}); check this host's clock (NTP)`);
  }
  if (error === 'invalid_grant' || error === 'invalid_client' || error === 'access_denied') {
    return refused(`Google refused service account ${email} (${said}); check service_account.client_email and its key, and that the account is not disabled`);
  }
  return new RelayError(ErrorCode.Unavailable, `sender "${sender}": token request failed (${said})`);
}

async function boundedText(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > MAX_ANSWER_BYTES) {
      await reader.cancel();
      throw new Error(`the answer is larger than ${MAX_ANSWER_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
