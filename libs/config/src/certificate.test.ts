import { createHash, X509Certificate } from 'node:crypto';
import { makeAppCertificate, type AppCertificate } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateExpiries, checkCertificateKey, senderCertificate } from './certificate.js';
import { parseConfig, parseManagedSender } from './load.js';
import { MissingSecret, Secret } from './secret.js';

const KEY = 'k'.repeat(40);
let good: AppCertificate;
let other: AppCertificate;
let expired: AppCertificate;
let ec: AppCertificate;
let pkcs1: AppCertificate;

beforeAll(() => {
  good = makeAppCertificate();
  other = makeAppCertificate();
  expired = makeAppCertificate({ notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-01-02T00:00:00Z') });
  ec = makeAppCertificate({ keyType: 'ec' });
  pkcs1 = makeAppCertificate({ pkcs1: true });
});
afterAll(() => {
  for (const c of [good, other, expired, ec, pkcs1]) c.remove();
});

const graphSender = (cert: string) => `
clients: [{ name: a, api_key: ${KEY}, senders: [registrar] }]
senders:
  - id: registrar
    from: registrar@campus.example
    transport: graph
    graph: { tenant_id: t, client_id: c, mailbox: registrar@campus.example, client_certificate: ${cert} }
`;
const smtpSender = (auth: string) => `
clients: [{ name: a, api_key: ${KEY}, senders: [app] }]
senders:
  - id: app
    from: app@campus.example
    transport: smtp
    smtp: { host: smtp.office365.com, port: 587, security: starttls, auth: { type: oauth2, provider: microsoft, flow: client_credentials, tenant_id: t, client_id: c, user: app@campus.example, ${auth} } }
`;
const files = (c: AppCertificate, key = c) => `{ certificate_file: "${c.certFile}", private_key_file: "${key.keyFile}" }`;
const errorOf = (text: string, opts?: Parameters<typeof parseConfig>[3]) => {
  try {
    parseConfig(text, {}, 'relay.yaml', opts);
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
};

describe('certificate credentials in relay.yaml', () => {
  it('reads a Graph sender certificate: thumbprints, notAfter and the key as PKCS#8', () => {
    const s = parseConfig(graphSender(files(good)), {}).senders[0]!;
    const cert = s.graph!.clientCertificate!;
    const x509 = new X509Certificate(good.certPem);
    expect(cert.thumbprintSha256).toBe(createHash('sha256').update(x509.raw).digest('hex').toUpperCase());
    expect(cert.thumbprint).toBe(createHash('sha1').update(x509.raw).digest('hex').toUpperCase());
    expect(cert.notAfter.toISOString()).toBe(x509.validToDate.toISOString());
    expect(cert.privateKey.reveal()).toBe(good.keyPem);
    expect(s.graph!.clientSecret).toBeUndefined();
    expect(senderCertificate(s)).toBe(cert);
    expect(JSON.stringify(s)).not.toContain('PRIVATE KEY');
    expect(JSON.stringify(s.spec)).toContain('private_key_file');
  });

  it('reads an SMTP client-credentials certificate, and turns a PKCS#1 key into PKCS#8 for MSAL', () => {
    const config = parseConfig(smtpSender(`client_certificate: ${files(pkcs1)}`), {});
    const auth = config.senders[0]!.smtp!.auth;
    expect(auth.type === 'oauth2' && auth.clientCertificate?.privateKey.reveal()).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(certificateExpiries(config)).toEqual([
      { sender: 'app', notAfter: new X509Certificate(pkcs1.certPem).validToDate, thumbprintSha256: expect.stringMatching(/^[0-9A-F]{64}$/) },
    ]);
  });

  it('refuses an expired certificate, naming the sender, the field and notAfter', () => {
    expect(errorOf(graphSender(files(expired)))).toBe(
      'relay.yaml: senders[0].graph.client_certificate.certificate_file: the certificate of sender "registrar" expired on 2020-01-02T00:00:00.000Z (notAfter); upload a new certificate to the app registration (Certificates & secrets) and configure it here',
    );
  });

  it('refuses a private key that is not the certificate’s', () => {
    const thumb = createHash('sha256').update(new X509Certificate(good.certPem).raw).digest('hex').toUpperCase();
    expect(errorOf(smtpSender(`client_certificate: ${files(good, other)}`))).toBe(
      `relay.yaml: senders[0].smtp.auth.client_certificate.private_key_file: the private key does not belong to the certificate of sender "app" (SHA-256 thumbprint ${thumb})`,
    );
  });

  it('checks the key only where secrets are read, and the certificate everywhere', () => {
    const text = smtpSender(`client_certificate: ${files(good, other)}`);
    expect(errorOf(text, { resolveSecrets: 'none' })).toBe('no error');
    expect(errorOf(smtpSender(`client_certificate: ${files(expired)}`), { resolveSecrets: 'none' })).toMatch(/expired on 2020-01-02T00:00:00\.000Z/);
  });

  it('names every other problem', () => {
    expect(errorOf(graphSender(`{ certificate_file: "${ec.certFile}", private_key_file: "${ec.keyFile}" }`))).toBe(
      'relay.yaml: senders[0].graph.client_certificate.certificate_file: the certificate of sender "registrar" has an ec key; Entra ID takes RSA certificates only',
    );
    expect(errorOf(graphSender(`{ certificate_file: /nonexistent/app.pem, private_key_file: "${good.keyFile}" }`))).toBe(
      'relay.yaml: senders[0].graph.client_certificate.certificate_file: cannot read /nonexistent/app.pem (ENOENT)',
    );
    expect(errorOf(graphSender(`{ certificate_file: "${good.keyFile}", private_key_file: "${good.keyFile}" }`))).toBe(
      `relay.yaml: senders[0].graph.client_certificate.certificate_file: ${good.keyFile} holds no PEM certificate`,
    );
    expect(errorOf(graphSender(`{ certificate_file: "${good.certFile}", private_key_file: "${good.certFile}" }`))).toMatch(
      /^relay\.yaml: senders\[0\]\.graph\.client_certificate\.private_key_file: not an unencrypted PEM private key \(/,
    );
    expect(errorOf(graphSender(`{ certificate_file: "${good.certFile}" }`))).toContain(
      'senders[0].graph.client_certificate.private_key_file: give private_key_file or private_key (one of them)',
    );
    expect(errorOf(graphSender(`{ private_key_file: "${good.keyFile}" }`))).toContain(
      'senders[0].graph.client_certificate.certificate_file: give certificate_file or certificate_pem (one of them)',
    );
    expect(errorOf(smtpSender(`client_secret: s, client_certificate: ${files(good)}`))).toBe(
      'relay.yaml: senders[0].smtp.auth.client_certificate: give client_secret or client_certificate, not both',
    );
    expect(errorOf(smtpSender(''))).toBe('relay.yaml: senders[0].smtp.auth.client_secret: required for flow: client_credentials (or client_certificate)');
    expect(errorOf(graphSender(`${files(good)}, client_secret: s`))).toBe(
      'relay.yaml: senders[0].graph.client_certificate: give client_secret or client_certificate, not both',
    );
    expect(errorOf(graphSender(`${files(good)}`).replace(/, client_certificate: \{[^}]*\}/, ''))).toBe(
      'relay.yaml: senders[0].graph.client_secret: required (or client_certificate)',
    );
  });

  it('signs the console in with a certificate, and refuses an expired one', () => {
    const base = `clients: [{ name: a, api_key: ${KEY} }]\nsenders: [{ id: s, from: s@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }]\n`;
    const console = (c: AppCertificate) =>
      `${base}console: { issuer: "https://idp.example/t/v2.0", client_id: app-1, client_certificate: ${files(c)}, admins: [a@campus.example] }\n`;
    const config = parseConfig(console(good), {});
    expect(config.console?.clientCertificate?.privateKey.reveal()).toBe(good.keyPem);
    expect(certificateExpiries(config).map((e) => e.sender)).toEqual([undefined]);
    expect(errorOf(console(expired))).toBe(
      'relay.yaml: console.client_certificate.certificate_file: the certificate of the console expired on 2020-01-02T00:00:00.000Z (notAfter); upload a new certificate to the app registration (Certificates & secrets) and configure it here',
    );
  });
});

describe('certificate credentials of senders managed through the API', () => {
  const spec = (cert: Record<string, unknown>) => ({
    id: 'g',
    from: 'g@campus.example',
    transport: 'graph',
    graph: { tenant_id: 't', client_id: 'c', mailbox: 'g@campus.example', client_certificate: cert },
  });

  it('takes the certificate inline and the key as a sealed secret', () => {
    const seen: string[] = [];
    const s = parseManagedSender(spec({ certificate_pem: good.certPem }), (ref) => {
      seen.push(ref);
      return new Secret(good.keyPem);
    });
    expect(seen).toEqual(['sealed:graph.client_certificate.private_key']);
    expect(s.graph!.clientCertificate!.privateKey.reveal()).toBe(good.keyPem);
    // Not set yet: the sender exists, and using it says what to do.
    const unset = parseManagedSender(spec({ certificate_pem: good.certPem }), (ref) => new MissingSecret('g', ref.slice('sealed:'.length)));
    expect(() => unset.graph!.clientCertificate!.privateKey.reveal()).toThrow(
      'sender "g": graph.client_certificate.private_key is not set; set it with SetSenderSecret (relay senders set-secret g graph.client_certificate.private_key)',
    );
  });

  it('refuses files, a key in the settings, a wrong key and an expired certificate', () => {
    const key = () => new Secret(good.keyPem);
    expect(() => parseManagedSender(spec({ certificate_file: good.certFile }), key)).toThrow(
      "graph.client_certificate.certificate_file: not accepted through the API (it names a file on the relay's hosts); use certificate_pem, or set it for a sender in relay.yaml",
    );
    expect(() => parseManagedSender(spec({ certificate_pem: good.certPem, private_key_file: good.keyFile }), key)).toThrow(
      "graph.client_certificate.private_key_file: not accepted through the API (it names a file on the relay's hosts); use SetSenderSecret for graph.client_certificate.private_key, or set it for a sender in relay.yaml",
    );
    expect(() => parseManagedSender(spec({ certificate_pem: good.certPem, private_key: good.keyPem }), key)).toThrow(
      "graph.client_certificate.private_key: secrets are not accepted in a sender's settings; set it with SetSenderSecret (relay senders set-secret)",
    );
    expect(() => parseManagedSender(spec({ certificate_pem: other.certPem }), key)).toThrow(
      /^graph\.client_certificate\.private_key: the private key does not belong to the certificate of sender "g"/,
    );
    expect(() => parseManagedSender(spec({ certificate_pem: expired.certPem }), key)).toThrow(
      'graph.client_certificate.certificate_pem: the certificate of sender "g" expired on 2020-01-02T00:00:00.000Z (notAfter)',
    );
  });
});

describe('SetSenderSecret of a certificate key', () => {
  const spec = { transport: 'smtp', smtp: { auth: { type: 'oauth2', client_certificate: { certificate_pem: '' } } } };
  const withCert = (pem: string) => {
    const s = structuredClone(spec);
    s.smtp.auth.client_certificate.certificate_pem = pem;
    return s;
  };

  it("takes the certificate's key, and refuses another key or something else", () => {
    const field = 'smtp.auth.client_certificate.private_key';
    expect(() => checkCertificateKey(withCert(good.certPem), 'app', field, good.keyPem)).not.toThrow();
    expect(() => checkCertificateKey(withCert(pkcs1.certPem), 'app', field, pkcs1.keyPem)).not.toThrow();
    expect(() => checkCertificateKey(withCert(good.certPem), 'app', field, other.keyPem)).toThrow(
      /^value: the private key does not belong to the certificate of sender "app" \(SHA-256 thumbprint [0-9A-F]{64}\)$/,
    );
    expect(() => checkCertificateKey(withCert(good.certPem), 'app', field, ec.keyPem)).toThrow(/^value: the private key does not belong/);
    expect(() => checkCertificateKey(withCert(good.certPem), 'app', field, 'hunter2')).toThrow(/^value: not an unencrypted PEM private key \(/);
    // Other secrets are not keys.
    expect(() => checkCertificateKey(withCert(good.certPem), 'app', 'smtp.auth.client_secret', 'hunter2')).not.toThrow();
  });
});
