import { createPrivateKey } from 'node:crypto';
import * as client from 'openid-client';
import type { ClientCertificateConfig, ConsoleConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import type { Person } from './session.js';

/** A sign-in in progress, kept in a signed cookie until the provider sends the browser back. */
export interface PendingSignIn {
  state: string;
  nonce: string;
  verifier: string;
}

export interface OidcSignIn {
  /** The provider's authorization URL (code + PKCE S256, state, nonce) and what to keep until the return. */
  begin(): Promise<{ url: string; pending: PendingSignIn }>;
  /** Redeems the code of the return URL; the person the ID token names. */
  complete(returnUrl: URL, pending: PendingSignIn): Promise<Person>;
}

/**
 * OpenID Connect sign-in for the console with openid-client: discovery from the issuer, the
 * authorization code flow with PKCE, and the ID token's issuer, audience, nonce and expiry checked.
 */
export function createOidcSignIn(cfg: ConsoleConfig, redirectUri: string): OidcSignIn {
  let discovered: Promise<client.Configuration> | undefined;
  const configuration = () => {
    discovered ??= (async () => {
      if (!cfg.clientCertificate) return client.discovery(new URL(cfg.issuer), cfg.clientId, cfg.clientSecret?.reveal());
      // Entra ID wants the assertion addressed to its token endpoint, known once discovery answered.
      let tokenEndpoint: string | undefined;
      const found = await client.discovery(new URL(cfg.issuer), cfg.clientId, undefined, await privateKeyJwt(cfg.clientCertificate, () => tokenEndpoint));
      tokenEndpoint = found.serverMetadata().token_endpoint;
      return found;
    })().catch((err: unknown) => {
      discovered = undefined; // try again at the next sign-in
      throw new RelayError(ErrorCode.Unavailable, `the identity provider at ${cfg.issuer} did not answer discovery: ${(err as Error).message}`, {
        cause: err,
      });
    });
    return discovered;
  };
  return {
    async begin() {
      const config = await configuration();
      const pending: PendingSignIn = { state: client.randomState(), nonce: client.randomNonce(), verifier: client.randomPKCECodeVerifier() };
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope: 'openid profile email',
        response_type: 'code',
        code_challenge: await client.calculatePKCECodeChallenge(pending.verifier),
        code_challenge_method: 'S256',
        state: pending.state,
        nonce: pending.nonce,
      });
      return { url: url.toString(), pending };
    },
    async complete(returnUrl, pending) {
      const config = await configuration();
      const tokens = await client.authorizationCodeGrant(config, returnUrl, {
        pkceCodeVerifier: pending.verifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
      const claims = tokens.claims();
      if (!claims) throw new RelayError(ErrorCode.Unauthenticated, 'the identity provider sent no ID token');
      const email = emailOf(claims);
      if (!email) throw new RelayError(ErrorCode.Unauthenticated, 'the ID token names no email address (claims email, preferred_username or upn)');
      const groups = Array.isArray(claims.groups) ? claims.groups.filter((g): g is string => typeof g === 'string') : [];
      const name = typeof claims.name === 'string' ? claims.name : email;
      return { email, name: name.slice(0, 200), groups: groups.filter((g) => cfg.adminGroups.includes(g)) };
    },
  };
}

/**
 * private_key_jwt with an Entra ID app's certificate, as MSAL signs its client assertions: PS256,
 * the certificate named by its SHA-256 thumbprint (x5t#S256), aud the token endpoint.
 */
async function privateKeyJwt(cert: ClientCertificateConfig, tokenEndpoint: () => string | undefined): Promise<client.ClientAuth> {
  const der = createPrivateKey(cert.privateKey.reveal()).export({ type: 'pkcs8', format: 'der' });
  const key = await crypto.subtle.importKey('pkcs8', der, { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['sign']);
  const x5tS256 = Buffer.from(cert.thumbprintSha256, 'hex').toString('base64url');
  return client.PrivateKeyJwt(key, {
    [client.modifyAssertion]: (header, payload) => {
      header['x5t#S256'] = x5tS256;
      const aud = tokenEndpoint();
      if (aud) payload.aud = aud;
    },
  });
}

/** Entra ID puts the address in preferred_username or upn when the account has no email claim. */
function emailOf(claims: Record<string, unknown>): string | undefined {
  if (claims.email_verified === false) return undefined;
  for (const k of ['email', 'preferred_username', 'upn']) {
    const v = claims[k];
    if (typeof v === 'string' && /^[^\s@]{1,128}@[^\s@]{1,253}$/.test(v)) return v.toLowerCase();
  }
  return undefined;
}
