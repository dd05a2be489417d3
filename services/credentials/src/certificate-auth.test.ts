import { createHash, createSign, X509Certificate } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { parseConfig, type SenderConfig } from '@relay/config';
import { ErrorCode, isRelayError } from '@relay/core';
import { makeAppCertificate, startIdentityFake, testCa, type AppCertificate, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { graphTokenAuth } from './graph-auth.js';
import { fetchToken, type OAuth2Auth } from './token-providers.js';

const CLIENT_ID = 'cert-app';
let idp: IdentityFake;
let registered: AppCertificate;
let stranger: AppCertificate;

beforeAll(async () => {
  // MSAL speaks HTTPS only: trust the test CA in this process.
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  registered = makeAppCertificate();
  stranger = makeAppCertificate();
  idp = await startIdentityFake({ clients: {}, certificates: { [CLIENT_ID]: registered.certPem } });
});

afterAll(async () => {
  await idp.close();
  registered.remove();
  stranger.remove();
});

function senders(cert: AppCertificate): SenderConfig[] {
  const files = `{ certificate_file: "${cert.certFile}", private_key_file: "${cert.keyFile}" }`;
  return parseConfig(
    `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]
senders:
  - id: app
    from: app@campus.example
    transport: smtp
    smtp: { host: 127.0.0.1, port: 2525, security: none, auth: { type: oauth2, provider: microsoft, flow: client_credentials, tenant_id: t1, client_id: ${CLIENT_ID}, client_certificate: ${files}, user: app@campus.example, authority_url: "${idp.url}" } }
  - id: delegated
    from: d@campus.example
    transport: smtp
    smtp: { host: 127.0.0.1, port: 2525, security: none, auth: { type: oauth2, provider: microsoft, tenant_id: t1, client_id: ${CLIENT_ID}, client_certificate: ${files}, user: d@campus.example, authority_url: "${idp.url}" } }
  - id: registrar
    from: registrar@campus.example
    transport: graph
    graph: { tenant_id: t1, client_id: ${CLIENT_ID}, client_certificate: ${files}, mailbox: registrar@campus.example, authority_url: "${idp.url}" }
`,
    {},
  ).senders;
}

const oauth = (s: SenderConfig) => s.smtp!.auth as OAuth2Auth;
const sha256Thumbprint = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');

describe('certificate credentials toward Entra ID', () => {
  it('gets an app-only SMTP token with a client assertion signed by the certificate', async () => {
    const [app] = senders(registered);
    const token = await fetchToken('app', oauth(app!), undefined);
    expect(idp.acceptsAccessToken(token.accessToken)).toBe(true);
    const req = idp.tokenRequests.at(-1)!;
    expect(req).toMatchObject({
      grantType: 'client_credentials',
      clientId: CLIENT_ID,
      clientAuth: 'assertion',
      scope: expect.stringContaining('https://outlook.office365.com/.default'),
    });
    // The fake checked signature, aud, iss/sub and time; the header names the certificate by its SHA-256 thumbprint.
    expect(req.assertionHeader).toMatchObject({ alg: 'PS256', 'x5t#S256': sha256Thumbprint(registered.certPem) });
  });

  it('gets a Graph token and refreshes a delegated grant with the certificate', async () => {
    const [, delegated, registrar] = senders(registered);
    const graph = await fetchToken('registrar', graphTokenAuth(registrar!.graph!), undefined);
    expect(idp.acceptsAccessToken(graph.accessToken)).toBe(true);
    expect(idp.tokenRequests.at(-1)).toMatchObject({ scope: expect.stringContaining('https://graph.microsoft.com/.default'), clientAuth: 'assertion' });
    const refreshed = await fetchToken('delegated', oauth(delegated!), idp.issueRefreshToken(CLIENT_ID, 'd@campus.example'));
    expect(idp.acceptsAccessToken(refreshed.accessToken)).toBe(true);
    expect(idp.tokenRequests.at(-1)).toMatchObject({ grantType: 'refresh_token', clientAuth: 'assertion' });
  });

  it('says which certificate to upload when the app registration does not have it', async () => {
    const [app] = senders(stranger);
    const sha1 = new X509Certificate(stranger.certPem).fingerprint.replaceAll(':', '');
    const err = await fetchToken('app', oauth(app!), undefined).catch((e: unknown) => e);
    expect(isRelayError(err) && err.code).toBe(ErrorCode.FailedPrecondition);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^sender "app": the identity platform refused the application's credentials \\(.*AADSTS700027: The certificate with identifier used to sign the client assertion is not registered.*\\); check client_id, and that the certificate \\(SHA-1 thumbprint ${sha1}\\) is uploaded to the app registration under Certificates & secrets$`,
      ),
    );
  });

  it('the identity fake refuses an assertion that names the registered certificate but is signed by another key', async () => {
    const now = Math.floor(Date.now() / 1000);
    const endpoint = `${idp.url}/t1/oauth2/v2.0/token`;
    const header = { alg: 'RS256', 'x5t#S256': sha256Thumbprint(registered.certPem) };
    const claims = { aud: endpoint, iss: CLIENT_ID, sub: CLIENT_ID, exp: now + 300, nbf: now, jti: 'x' };
    const input = [header, claims].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.');
    const forged = `${input}.${createSign('RSA-SHA256').update(input).sign(stranger.keyPem).toString('base64url')}`;
    const post = (assertion: string) =>
      fetch(endpoint, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          scope: 'https://graph.microsoft.com/.default',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: assertion,
        }),
      });
    const refused = await post(forged);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error_description: string }).error_description).toBe('AADSTS700027: Client assertion failed signature validation.');
    // The same claims signed by the registered key pass; addressed elsewhere, they do not.
    const signed = (c: object) => {
      const i = [header, c].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.');
      return `${i}.${createSign('RSA-SHA256').update(i).sign(registered.keyPem).toString('base64url')}`;
    };
    expect((await post(signed(claims))).status).toBe(200);
    const wrongAud = await post(signed({ ...claims, aud: 'https://login.microsoftonline.com/t1/oauth2/v2.0/token' }));
    expect(((await wrongAud.json()) as { error_description: string }).error_description).toMatch(/^AADSTS700021: /);
    const wrongSub = await post(signed({ ...claims, sub: 'someone-else' }));
    expect(((await wrongSub.json()) as { error_description: string }).error_description).toMatch(/^AADSTS700023: /);
  });
});
