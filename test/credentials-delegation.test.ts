import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import { Redis } from 'ioredis';
import { status, type ServiceError } from '@grpc/grpc-js';
import {
  BeginConsentRequestSchema,
  CreateApiKeyRequestSchema,
  MessageState,
  PutClientRequestSchema,
  PutSenderRequestSchema,
  SetSenderSecretRequestSchema,
  type BeginConsentResponse,
  type CreateApiKeyResponse,
  GetSenderRequestSchema,
  type GetSenderResponse,
  type PutSenderResponse,
  type TestSenderResponse,
} from '@relay/proto';
import {
  clientEntry,
  eventually,
  FAST_DELIVERY,
  type GraphFake,
  type IdentityFake,
  newClient,
  type Stack,
  startGraphFake,
  startIdentityFake,
  startSmtpServer,
  startStack,
  testCa,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A department's Graph sender signed in by its own mailbox (delegated Mail.Send), and a Gmail
// sender whose tokens come from a Google service account with domain-wide delegation.
const DEPT_APP = 'history-dept-app';
const DEPT_SECRET = 'history-dept-secret-value';
const DEPT_MAILBOX = 'history@campus.example';
// Another department's mailbox, signed in the same way, whose bounces the relay reads (feedback.graph).
const ADM_MAILBOX = 'admissions@campus.example';
const SA_EMAIL = 'relay-mailer@campus-relay.iam.gserviceaccount.com';
const SA_CLIENT_ID = '104729384756102938475';
const GMAIL_USER = 'mailer@campus.example';

let idp: IdentityFake;
let graph: GraphFake;
let smtp: TestSmtpServer;
let stack: Stack;
let client: TestClient;
let dir: string;
let saKeyPem: string;

const app = newClient('department-app', ['history', 'admissions', 'gmail']);
const ops = newClient('it-ops', [], true);

beforeAll(async () => {
  // This process plays the browser that signs in at the identity platform double.
  setDefaultCACertificates([...getCACertificates('default'), testCa().caPem]);
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 });
  saKeyPem = key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  idp = await startIdentityFake({
    clients: { [DEPT_APP]: DEPT_SECRET },
    // No delegation granted yet: the first token request is refused as Google refuses it.
    serviceAccounts: { [SA_EMAIL]: { publicKeyPem: key.publicKey.export({ type: 'spki', format: 'pem' }).toString(), users: [GMAIL_USER] } },
  });
  graph = await startGraphFake({ identity: idp, mailboxes: { [DEPT_MAILBOX]: {}, [ADM_MAILBOX]: {} } });
  smtp = await startSmtpServer({ security: 'starttls', xoauth2: (user, token) => user === GMAIL_USER && idp.acceptsAccessToken(token) });
  // The key file as Google Cloud hands it out; only relay-credentials reads it.
  dir = mkdtempSync(join(tmpdir(), 'relay-sa-e2e-'));
  const keyFile = join(dir, 'service-account.json');
  writeFileSync(
    keyFile,
    JSON.stringify({
      type: 'service_account',
      project_id: 'campus-relay',
      private_key_id: 'a1b2c3',
      private_key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: SA_EMAIL,
      client_id: SA_CLIENT_ID,
      token_uri: 'https://oauth2.googleapis.com/token',
    }),
    { mode: 0o600 },
  );
  stack = await startStack({
    label: 'delegation',
    env: { NODE_EXTRA_CA_CERTS: testCa().caFile, DEPT_SECRET },
    config: {
      clients: [clientEntry(app), clientEntry(ops)],
      senders: [
        {
          id: 'history',
          from: DEPT_MAILBOX,
          transport: 'graph',
          graph: {
            flow: 'refresh_token',
            tenant_id: 'tenant-history',
            client_id: DEPT_APP,
            client_secret: 'env:DEPT_SECRET',
            mailbox: DEPT_MAILBOX,
            authority_url: idp.url,
            graph_url: graph.url,
          },
        },
        {
          id: 'admissions',
          from: ADM_MAILBOX,
          transport: 'graph',
          graph: {
            flow: 'refresh_token',
            tenant_id: 'tenant-admissions',
            client_id: DEPT_APP,
            client_secret: 'env:DEPT_SECRET',
            mailbox: ADM_MAILBOX,
            authority_url: idp.url,
            graph_url: graph.url,
          },
          feedback: { graph: true, interval: '200ms' },
        },
        {
          id: 'gmail',
          from: GMAIL_USER,
          transport: 'smtp',
          smtp: {
            host: '127.0.0.1',
            port: smtp.port,
            security: 'starttls',
            servername: 'localhost',
            ca_file: testCa().caFile,
            auth: {
              type: 'oauth2',
              provider: 'google',
              flow: 'service_account',
              user: GMAIL_USER,
              service_account_file: keyFile,
              token_url: `${idp.url}/token`,
            },
          },
        },
      ],
      delivery: FAST_DELIVERY,
    },
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  if (stack) {
    const redis = new Redis(stack.env.REDIS_URL!);
    const keys = await redis.keys(`${stack.prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  }
  const results = await stack?.stop();
  await Promise.all([smtp?.close(), graph?.close(), idp?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
  expect(uncleanExits(results ?? [])).toEqual([]);
});

const sentWithId = (id: string) => graph.sent.filter((m) => m.message.internetMessageHeaders?.some((h) => h.name === 'X-Relay-Message-Id' && h.value === id));

describe('delegated Graph consent and Google domain-wide delegation end to end', () => {
  it('delivers through Graph with the mailbox delegated token once the mailbox signed in (BeginConsent → callback)', async () => {
    const res = await client.sendMail({ sender: 'history', to: ['ada@students.campus.example'], subject: 'Seminar moved', text: 'Room 2.14' });
    const waiting = await waitForState(client, res.messageId, [MessageState.RETRYING]);
    expect(waiting.lastError).toMatch(/needs consent/);

    const { authorizeUrl } = await client.admin<BeginConsentResponse>('beginConsent', create(BeginConsentRequestSchema, { sender: 'history' }), {
      apiKey: ops.apiKey,
    });
    const authorize = new URL(authorizeUrl);
    expect(`${authorize.origin}${authorize.pathname}`).toBe(`${idp.url}/tenant-history/oauth2/v2.0/authorize`);
    expect(authorize.searchParams.get('scope')).toBe('https://graph.microsoft.com/Mail.Send offline_access openid profile');
    const signedIn = await fetch(authorize, { redirect: 'manual' });
    const back = new URL(signedIn.headers.get('location')!);
    const done = await fetch(`http://127.0.0.1:${stack.ingest.ports.http}${back.pathname}${back.search}`);
    expect(done.status).toBe(200);
    expect(await done.text()).toMatch(/authorized/);

    const sent = await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    expect(sent.state).toBe(MessageState.SENT);
    const [delivered] = sentWithId(res.messageId);
    expect(delivered?.mailbox).toBe(DEPT_MAILBOX);
    expect(delivered?.message.subject).toBe('Seminar moved');
    const refreshes = idp.tokenRequests.filter((r) => r.tenant === 'tenant-history' && r.grantType === 'refresh_token');
    expect(refreshes.length).toBeGreaterThan(0);
    expect(refreshes[0]!.scope.split(' ')).toContain('https://graph.microsoft.com/Mail.Send');

    const test = await client.testSender({ sender: 'history' }, { apiKey: ops.apiKey });
    // The consent just made: its refresh token's 90 idle days are counted from now, far off.
    expect((test as TestSenderResponse).steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}${s.warning ? ' (warning)' : ''}`)).toEqual([
      'credential expiry:ok',
      'token:ok',
      'permission:ok',
      'mailbox:ok',
    ]);
  });

  it('signs a delegated Graph sender with feedback.graph in for Mail.ReadWrite too, and reads its bounces with that token', async () => {
    const { authorizeUrl } = await client.admin<BeginConsentResponse>('beginConsent', create(BeginConsentRequestSchema, { sender: 'admissions' }), {
      apiKey: ops.apiKey,
    });
    const authorize = new URL(authorizeUrl);
    expect(authorize.searchParams.get('scope')).toBe(
      'https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.ReadWrite offline_access openid profile',
    );
    const signedIn = await fetch(authorize, { redirect: 'manual' });
    const back = new URL(signedIn.headers.get('location')!);
    const done = await fetch(`http://127.0.0.1:${stack.ingest.ports.http}${back.pathname}${back.search}`);
    expect(done.status).toBe(200);

    const res = await client.sendMail({ sender: 'admissions', to: ['gone@fabrikam.com'], subject: 'Offer letter', text: 'Welcome' });
    await waitForState(client, res.messageId, [MessageState.SENT], 30_000);
    // Exchange's bounce of it, in the mailbox's Inbox.
    const ndr = readFileSync(new URL('../libs/mail/test-fixtures/ndr/exchange-online-5.1.10.eml', import.meta.url), 'utf8');
    graph.deliver(ADM_MAILBOX, Buffer.from(ndr.replaceAll('0193a5b2-cccc-7d10-8a2b-3c4d5e6f7a84', res.messageId)));
    const bounced = await eventually(async () => {
      const m = await client.getMessage(res.messageId);
      return m.state === MessageState.BOUNCED ? m : undefined;
    }, 30_000);
    expect(bounced.state).toBe(MessageState.BOUNCED);
    // The report is recorded first, then moved.
    await eventually(() => (graph.folderMessages(ADM_MAILBOX, 'Delivery reports').length === 1 ? true : undefined));
    const refreshes = idp.tokenRequests.filter((r) => r.tenant === 'tenant-admissions' && r.grantType === 'refresh_token');
    expect(refreshes.length).toBeGreaterThan(0);
    expect(refreshes.every((r) => r.scope.split(' ').includes('https://graph.microsoft.com/Mail.ReadWrite'))).toBe(true);
    // Only the sender that reads its reports asks for it.
    const history = idp.tokenRequests.filter((r) => r.tenant === 'tenant-history' && r.grantType === 'refresh_token');
    expect(history.some((r) => r.scope.includes('Mail.ReadWrite'))).toBe(false);

    const test = (await client.testSender({ sender: 'admissions' }, { apiKey: ops.apiKey })) as TestSenderResponse;
    expect(test.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`)).toEqual([
      'credential expiry:ok',
      'token:ok',
      'reports permission:ok',
      'permission:ok',
      'mailbox:ok',
      'drafts:ok',
    ]);
  });

  it('says how to grant domain-wide delegation, then delivers over XOAUTH2 with the service account token', async () => {
    const res = await client.sendMail({ sender: 'gmail', to: ['bob@students.campus.example'], subject: 'Timetable', text: 'attached soon' });
    const waiting = await waitForState(client, res.messageId, [MessageState.RETRYING]);
    expect(waiting.lastError).toContain(
      `Google has not granted domain-wide delegation to service account ${SA_EMAIL} for the scope https://mail.google.com/ (unauthorized_client: `,
    );
    expect(waiting.lastError).toContain(
      `in the Google Admin console (admin.google.com): Security → Access and data control → API controls → Domain-wide delegation → Add new, enter client ID ${SA_CLIENT_ID} and the OAuth scope https://mail.google.com/`,
    );

    idp.delegate(SA_EMAIL, ['https://mail.google.com/']);
    const mail = await waitForMail(smtp, res.messageId, 30_000);
    expect(mail.user).toBe(GMAIL_USER);
    await waitForState(client, res.messageId, [MessageState.SENT]);
    const granted = idp.tokenRequests.filter((r) => r.clientId === SA_EMAIL && r.bearerClaims?.sub === GMAIL_USER);
    expect(granted.at(-1)!.bearerClaims).toMatchObject({ iss: SA_EMAIL, sub: GMAIL_USER, scope: 'https://mail.google.com/', aud: `${idp.url}/token` });
  });

  it('takes a managed sender service account key through SetSenderSecret, refusing one that is not a key', async () => {
    const admin = (method: string, req: unknown) => client.admin(method, req, { apiKey: ops.apiKey });
    const spec = (clientEmail: string) => ({
      from: GMAIL_USER,
      transport: 'smtp',
      smtp: {
        host: '127.0.0.1',
        port: smtp.port,
        security: 'starttls',
        servername: 'localhost',
        ca_pem: testCa().caPem,
        auth: {
          type: 'oauth2',
          provider: 'google',
          flow: 'service_account',
          user: GMAIL_USER,
          service_account: { client_email: clientEmail },
          token_url: `${idp.url}/token`,
        },
      },
    });
    const put = (clientEmail: string, etag = '') =>
      client.admin<PutSenderResponse>('putSender', create(PutSenderRequestSchema, { sender: { id: 'gmail-api', spec: spec(clientEmail) as never, etag } }), {
        apiKey: ops.apiKey,
      });
    await put(SA_EMAIL);
    await admin('putClient', create(PutClientRequestSchema, { client: { name: 'gmail-api-app', spec: { senders: ['gmail-api'] } } }));
    const key = await client.admin<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'gmail-api-app' }), {
      apiKey: ops.apiKey,
    });
    const field = 'smtp.auth.service_account.private_key';
    const refused = await admin('setSenderSecret', create(SetSenderSecretRequestSchema, { id: 'gmail-api', field, value: 'not a key' })).then(
      () => undefined,
      (err: ServiceError) => err,
    );
    expect(refused?.code).toBe(status.INVALID_ARGUMENT);
    expect(refused?.details).toBe(
      'value: not an unencrypted PEM private key (ERR_OSSL_UNSUPPORTED); give the "private_key" of the service account\'s JSON key file',
    );
    // As the JSON key file writes it: \n escapes, as it often comes out of a secret store.
    await admin('setSenderSecret', create(SetSenderSecretRequestSchema, { id: 'gmail-api', field, value: saKeyPem.trim().replaceAll('\n', '\\n') }));
    const managed = stack.client(key.apiKey);
    const res = await managed.sendMail({ sender: 'gmail-api', to: ['carol@students.campus.example'], subject: 'managed', text: 'x' });
    const mail = await waitForMail(smtp, res.messageId, 30_000);
    expect(mail.user).toBe(GMAIL_USER);

    // Another service account is another sign-in: the key set for the first one is not kept.
    const current = await client.admin<GetSenderResponse>('getSender', create(GetSenderRequestSchema, { id: 'gmail-api' }), { apiKey: ops.apiKey });
    expect(current.sender?.secrets).toEqual([expect.objectContaining({ field, set: true })]);
    const moved = await put('other-mailer@campus-relay.iam.gserviceaccount.com', current.sender!.etag);
    expect(moved.sender?.secrets).toEqual([expect.objectContaining({ field, set: false })]);
  });
});
