import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { parseConfig } from '@relay/config';
import { makeAppCertificate, startIdentityFake, testCa, type AppCertificate, type IdentityFake } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOidcSignIn } from './oidc.js';

let idp: IdentityFake;
let cert: AppCertificate;

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  cert = makeAppCertificate();
  idp = await startIdentityFake({ clients: {}, certificates: { 'console-app': cert.certPem } });
});

afterAll(async () => {
  await idp.close();
  cert.remove();
});

describe('console sign-in with a certificate', () => {
  it('redeems the code with private_key_jwt signed by the app certificate', async () => {
    const config = parseConfig(
      `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]
senders: [{ id: s, from: s@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }]
console: { issuer: "${idp.url}/t1/v2.0", client_id: console-app, client_certificate: { certificate_file: "${cert.certFile}", private_key_file: "${cert.keyFile}" }, admins: [ada@campus.example] }
`,
      {},
    );
    const redirect = 'https://relay.campus.example/auth/callback';
    const signIn = createOidcSignIn(config.console!, redirect);
    idp.signInAs('ada@campus.example');
    const { url, pending } = await signIn.begin();
    const back = await fetch(url, { redirect: 'manual' });
    const location = back.headers.get('location');
    expect(location).toMatch(/^https:\/\/relay\.campus\.example\/auth\/callback\?code=/);
    const person = await signIn.complete(new URL(location!), pending);
    expect(person.email).toBe('ada@campus.example');
    const req = idp.tokenRequests.at(-1)!;
    expect(req).toMatchObject({ grantType: 'authorization_code', clientId: 'console-app', clientAuth: 'assertion' });
    expect(req.assertionHeader).toMatchObject({
      alg: 'PS256',
      'x5t#S256': Buffer.from(config.console!.clientCertificate!.thumbprintSha256, 'hex').toString('base64url'),
    });
  });
});
