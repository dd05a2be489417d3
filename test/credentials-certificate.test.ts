import { createHash, X509Certificate } from 'node:crypto';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import {
  CreateApiKeyRequestSchema,
  GetSenderRequestSchema,
  MessageState,
  PutClientRequestSchema,
  PutSenderRequestSchema,
  SetSenderSecretRequestSchema,
  type CreateApiKeyResponse,
  type GetSenderResponse,
} from '@relay/proto';
import {
  clientEntry,
  codeOf,
  FAST_DELIVERY,
  type IdentityFake,
  makeAppCertificate,
  mailsWithId,
  newClient,
  type AppCertificate,
  type Stack,
  startIdentityFake,
  startSmtpServer,
  startStack,
  status,
  testCa,
  type TestSmtpServer,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Entra ID certificate credentials end to end: the services load the certificate, relay-credentials
// signs client assertions with its key, and the identity double checks them.

let idp: IdentityFake;
let smtp: TestSmtpServer;
let stack: Stack;
let fileCert: AppCertificate;
let apiCert: AppCertificate;
let stranger: AppCertificate;
const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 20 * 86_400_000);
const app = newClient('cert-app', ['by-file', 'hve']);
const ops = newClient('it-ops', [], true);

function certSender(id: string, clientId: string, certificate: Record<string, unknown>, caFile = true): Record<string, unknown> {
  return {
    id,
    from: `${id}@campus.example`,
    transport: 'smtp',
    smtp: {
      host: '127.0.0.1',
      port: smtp.port,
      security: 'starttls',
      servername: 'localhost',
      ...(caFile ? { ca_file: testCa().caFile } : { ca_pem: testCa().caPem }),
      auth: {
        type: 'oauth2',
        provider: 'microsoft',
        flow: 'client_credentials',
        tenant_id: 'tenant-cert',
        client_id: clientId,
        client_certificate: certificate,
        user: `${id}@campus.example`,
        authority_url: idp.url,
      },
    },
  };
}

beforeAll(async () => {
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  fileCert = makeAppCertificate({ notAfter });
  apiCert = makeAppCertificate();
  stranger = makeAppCertificate();
  idp = await startIdentityFake({ clients: {}, certificates: { 'file-app': fileCert.certPem, 'api-app': apiCert.certPem } });
  smtp = await startSmtpServer({ security: 'starttls', xoauth2: (_user, token) => idp.acceptsAccessToken(token) });
  stack = await startStack({
    label: 'certs',
    env: { NODE_EXTRA_CA_CERTS: testCa().caFile },
    config: {
      clients: [clientEntry(app), clientEntry(ops)],
      senders: [
        certSender('by-file', 'file-app', { certificate_file: fileCert.certFile, private_key_file: fileCert.keyFile }),
        // Microsoft High Volume Email: app-only OAuth2 with a certificate, its preset's pace and rule.
        {
          ...certSender('hve', 'file-app', { certificate_file: fileCert.certFile, private_key_file: fileCert.keyFile }),
          rate: { preset: 'microsoft365-hve' },
        },
      ],
      delivery: FAST_DELIVERY,
    },
  });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
  await Promise.all([smtp?.close(), idp?.close()]);
  for (const c of [fileCert, apiCert, stranger]) c?.remove();
});

/** One sample of a Prometheus text exposition. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('certificate credentials', () => {
  it('delivers through a relay.yaml sender that signs in with a certificate, and reports when it expires', async () => {
    const client = stack.client(app.apiKey);
    const { messageId } = await client.sendMail({ sender: 'by-file', to: ['ada@example.org'], subject: 'cert', text: 'x' });
    await waitForState(client, messageId, [MessageState.SENT]);
    expect(mailsWithId(smtp, messageId)).toHaveLength(1);
    const req = idp.tokenRequests.find((r) => r.clientId === 'file-app');
    expect(req).toMatchObject({ grantType: 'client_credentials', clientAuth: 'assertion' });
    const metrics = await (await fetch(`http://127.0.0.1:${stack.credentials.ports.metrics}/metrics`)).text();
    const left = sample(metrics, 'relay_credential_expiry_seconds', { sender: 'by-file', kind: 'certificate' });
    expect(left).toBeGreaterThan(19 * 86_400);
    expect(left).toBeLessThanOrEqual(20 * 86_400);
  });

  it('delivers through a microsoft365-hve sender to an internal recipient and refuses an outside one at SendMail', async () => {
    const client = stack.client(app.apiKey);
    const { messageId } = await client.sendMail({ sender: 'hve', to: ['registrar@campus.example'], subject: 'hve', text: 'x' });
    await waitForState(client, messageId, [MessageState.SENT]);
    expect(mailsWithId(smtp, messageId)).toHaveLength(1);
    const refused = await codeOf(client.sendMail({ sender: 'hve', to: ['ada@example.org'], subject: 'hve', text: 'x' }));
    expect(refused.details).toMatch(/^to\[0\]: <ada@example\.org> is outside sender "hve"'s internal domains \(campus\.example\): the microsoft365-hve preset/);
  });

  it('a sender managed through the API takes the certificate inline and its key through SetSenderSecret, refusing a wrong key', async () => {
    const admin = stack.client(ops.apiKey);
    const { id: _id, ...spec } = certSender('by-api', 'api-app', { certificate_pem: apiCert.certPem }, false);
    await admin.admin('putSender', create(PutSenderRequestSchema, { sender: { id: 'by-api', spec: spec as never } }));
    await admin.admin('putClient', create(PutClientRequestSchema, { client: { name: 'api-app', spec: { senders: ['by-api'] } } }));
    const key = await admin.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'api-app' }));
    const field = 'smtp.auth.client_certificate.private_key';
    const wrong = await codeOf(admin.admin('setSenderSecret', create(SetSenderSecretRequestSchema, { id: 'by-api', field, value: stranger.keyPem })));
    const thumbprint = createHash('sha256').update(new X509Certificate(apiCert.certPem).raw).digest('hex').toUpperCase();
    expect(wrong).toEqual({
      code: status.INVALID_ARGUMENT,
      details: `value: the private key does not belong to the certificate of sender "by-api" (SHA-256 thumbprint ${thumbprint})`,
    });
    await admin.admin('setSenderSecret', create(SetSenderSecretRequestSchema, { id: 'by-api', field, value: apiCert.keyPem }));
    const client = stack.client(key.apiKey);
    const { messageId } = await client.sendMail({ sender: 'by-api', to: ['grace@example.org'], subject: 'cert', text: 'x' });
    await waitForState(client, messageId, [MessageState.SENT], 30_000);
    expect(mailsWithId(smtp, messageId)).toHaveLength(1);
    expect(idp.tokenRequests.find((r) => r.clientId === 'api-app')).toMatchObject({ clientAuth: 'assertion' });
    // A new certificate needs its own key: the one set for the old certificate no longer counts.
    const shown = await admin.admin<GetSenderResponse>('getSender', create(GetSenderRequestSchema, { id: 'by-api' }));
    expect(shown.sender?.secrets).toContainEqual(expect.objectContaining({ field, set: true }));
    const renewed = certSender('by-api', 'api-app', { certificate_pem: stranger.certPem }, false);
    delete renewed.id;
    await admin.admin('putSender', create(PutSenderRequestSchema, { sender: { id: 'by-api', spec: renewed as never, etag: shown.sender!.etag } }));
    const after = await admin.admin<GetSenderResponse>('getSender', create(GetSenderRequestSchema, { id: 'by-api' }));
    expect(after.sender?.secrets).toContainEqual(expect.objectContaining({ field, set: false }));
  });
});
