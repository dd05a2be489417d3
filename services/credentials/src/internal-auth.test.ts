import { create } from '@bufbuild/protobuf';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { credentials as grpcCredentials, makeGenericClientConstructor, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { parseConfig, readEnv } from '@relay/config';
import type { RunnableService } from '@relay/core';
import {
  BeginConsentRequestSchema,
  CompleteConsentRequestSchema,
  createCredentialsClient,
  GetCredentialStatusRequestSchema,
  CredentialsService,
  GetSmtpAuthRequestSchema,
  GetSmtpAuthResponse_Kind,
  SignWebhookRequestSchema,
  toGrpcDefinition,
} from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { dropBus, internalTls, testNatsUrl, testRedisUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCredentials } from './credentials.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const config = parseConfig(
  `clients: [{ name: app, api_key: k-${randomBytes(16).toString('hex')}, senders: [mail] }]
senders:
  - { id: mail, from: mail@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2587, security: none, auth: { type: password, user: mail@campus.example, password: ${PASSWORD} } } }
`,
  {},
);
const masterKey = randomBytes(32);
const Ctor = makeGenericClientConstructor(toGrpcDefinition(CredentialsService), 'CredentialsService');

interface Running {
  service: RunnableService;
  address: string;
  prefix: string;
}
const running: Running[] = [];

async function start(extraEnv: Record<string, string>): Promise<string> {
  const prefix = uniquePrefix('intauth');
  const env = readEnv({
    NATS_URL: testNatsUrl(),
    REDIS_URL: testRedisUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_MASTER_KEY: masterKey.toString('base64'),
    RELAY_HOST: '127.0.0.1',
    RELAY_CREDENTIALS_PORT: '0',
    ...extraEnv,
  });
  const service = await createCredentials({ env, config, logger });
  const ports = await service.start();
  const address = `127.0.0.1:${ports.grpc}`;
  running.push({ service, address, prefix });
  return address;
}

/** An internal call with a hand-made channel and metadata: what an attacker in the cluster can do. */
function rawCall(
  address: string,
  channel: ReturnType<typeof grpcCredentials.createInsecure>,
  token?: string,
  method: 'getSmtpAuth' | 'beginConsent' | 'completeConsent' | 'getCredentialStatus' | 'signWebhook' = 'getSmtpAuth',
): Promise<{ code: number; password?: string; httpStatus?: number }> {
  const client = new Ctor(address, channel, { 'grpc.ssl_target_name_override': 'localhost' }) as unknown as Record<string, (...args: unknown[]) => unknown> & {
    close(): void;
  };
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  const req =
    method === 'getSmtpAuth'
      ? create(GetSmtpAuthRequestSchema, { sender: 'mail' })
      : method === 'beginConsent'
        ? create(BeginConsentRequestSchema, { sender: 'mail' })
        : method === 'getCredentialStatus'
          ? create(GetCredentialStatusRequestSchema, { sender: 'mail' })
          : method === 'signWebhook'
            ? create(SignWebhookRequestSchema, { client: 'app', url: 'https://app.example/h', id: 'evt_1', timestamp: BigInt(Math.floor(Date.now() / 1000)) })
            : create(CompleteConsentRequestSchema, { state: 'forged', code: 'c' });
  return new Promise((resolve) => {
    client[method]!(req, md, { deadline: Date.now() + 5_000 }, (err: ServiceError | null, res?: { password?: string; httpStatus?: number }) => {
      client.close();
      resolve(
        err
          ? { code: err.code }
          : { code: status.OK, ...(res?.password ? { password: res.password } : {}), ...(res?.httpStatus ? { httpStatus: res.httpStatus } : {}) },
      );
    });
  });
}

afterAll(async () => {
  await Promise.allSettled(running.map((r) => r.service.stop()));
  await Promise.allSettled(running.map((r) => dropBus(r.prefix)));
});

describe('internal token', () => {
  const token = randomBytes(32).toString('base64url');
  const ingestToken = randomBytes(32).toString('base64url');
  let address: string;
  beforeAll(async () => {
    address = await start({ RELAY_INTERNAL_TOKEN: token, RELAY_INTERNAL_ADMIN_TOKEN: ingestToken });
  });

  it("refuses ingest's token for a password, and the senders' token for an admin call", async () => {
    expect(await rawCall(address, grpcCredentials.createInsecure(), ingestToken)).toEqual({ code: status.UNAUTHENTICATED });
    expect(await rawCall(address, grpcCredentials.createInsecure(), token, 'beginConsent')).toEqual({ code: status.UNAUTHENTICATED });
    // Each token does pass for its own calls (BeginConsent then says the sender has no OAuth2).
    expect(await rawCall(address, grpcCredentials.createInsecure(), ingestToken, 'beginConsent')).toEqual({ code: status.FAILED_PRECONDITION });
  });

  it("takes a consent redirect only with ingest's token, and answers a forged state with a 400 page", async () => {
    expect(await rawCall(address, grpcCredentials.createInsecure(), token, 'completeConsent')).toEqual({ code: status.UNAUTHENTICATED });
    expect(await rawCall(address, grpcCredentials.createInsecure(), undefined, 'completeConsent')).toEqual({ code: status.UNAUTHENTICATED });
    expect(await rawCall(address, grpcCredentials.createInsecure(), ingestToken, 'completeConsent')).toEqual({ code: status.OK, httpStatus: 400 });
  });

  it("answers the credential status only with ingest's token", async () => {
    expect(await rawCall(address, grpcCredentials.createInsecure(), token, 'getCredentialStatus')).toEqual({ code: status.UNAUTHENTICATED });
    expect(await rawCall(address, grpcCredentials.createInsecure(), undefined, 'getCredentialStatus')).toEqual({ code: status.UNAUTHENTICATED });
    expect(await rawCall(address, grpcCredentials.createInsecure(), ingestToken, 'getCredentialStatus')).toEqual({ code: status.OK });
    const client = createCredentialsClient(address, { kind: 'token', token: ingestToken });
    try {
      // A password sender has no consent and no token: every fact is unset.
      const facts = (await client.getCredentialStatus({ sender: 'mail' }, 5_000)).status!;
      expect([facts.consentedBy, facts.consentedAt, facts.tokenRefreshedAt, facts.tokenExpiresAt]).toEqual(['', undefined, undefined, undefined]);
      await expect(client.getCredentialStatus({ sender: 'bad id!' }, 5_000)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    } finally {
      client.close();
    }
  });

  it("signs webhooks only for ingest's token", async () => {
    expect(await rawCall(address, grpcCredentials.createInsecure(), token, 'signWebhook')).toEqual({ code: status.UNAUTHENTICATED });
    expect(await rawCall(address, grpcCredentials.createInsecure(), undefined, 'signWebhook')).toEqual({ code: status.UNAUTHENTICATED });
    // Past the check: relay.yaml's client "app" signs its own deliveries, so nothing is signed here.
    expect(await rawCall(address, grpcCredentials.createInsecure(), ingestToken, 'signWebhook')).toEqual({ code: status.FAILED_PRECONDITION });
  });

  it('refuses a token derived from the master key, as services used to make it', async () => {
    const derived = createHmac('sha256', masterKey).update('relay-internal-grpc-v1').digest('base64url');
    expect(await rawCall(address, grpcCredentials.createInsecure(), derived)).toEqual({ code: status.UNAUTHENTICATED });
    expect(await rawCall(address, grpcCredentials.createInsecure())).toEqual({ code: status.UNAUTHENTICATED });
  });

  it('answers a caller with the configured token', async () => {
    const client = createCredentialsClient(address, { kind: 'token', token });
    const res = await client.getSmtpAuth({ sender: 'mail' }).finally(() => client.close());
    expect(res.kind).toBe(GetSmtpAuthResponse_Kind.PASSWORD);
    expect(res.password).toBe(PASSWORD);
  });
});

describe('internal mutual TLS', () => {
  const files = internalTls();
  const read = (path: string) => readFileSync(path);
  let address: string;
  beforeAll(async () => {
    address = await start({ RELAY_INTERNAL_CA: files.ca, RELAY_INTERNAL_CERT: files.server.cert, RELAY_INTERNAL_KEY: files.server.key });
  });

  it('refuses a caller without a client certificate, even one holding the old derived token', async () => {
    const derived = createHmac('sha256', masterKey).update('relay-internal-grpc-v1').digest('base64url');
    const r = await rawCall(address, grpcCredentials.createSsl(read(files.ca)), derived);
    expect(r.password).toBeUndefined();
    expect(r.code).not.toBe(status.OK);
    expect((await rawCall(address, grpcCredentials.createInsecure(), derived)).code).not.toBe(status.OK);
  });

  it('refuses a client certificate from another CA', async () => {
    const r = await rawCall(address, grpcCredentials.createSsl(read(files.ca), read(files.stranger.key), read(files.stranger.cert)));
    expect(r.password).toBeUndefined();
    expect(r.code).not.toBe(status.OK);
  });

  it('lets a certificate make only the calls of the service it names', async () => {
    // internal-client.pem names relay-smtp-sender: SMTP passwords yes, a consent no.
    const channel = () => grpcCredentials.createSsl(read(files.ca), read(files.client.key), read(files.client.cert));
    expect(await rawCall(address, channel(), undefined, 'beginConsent')).toEqual({ code: status.PERMISSION_DENIED });
    expect(await rawCall(address, channel(), undefined, 'completeConsent')).toEqual({ code: status.PERMISSION_DENIED });
    expect(await rawCall(address, channel(), undefined, 'getCredentialStatus')).toEqual({ code: status.PERMISSION_DENIED });
    expect(await rawCall(address, channel(), undefined, 'signWebhook')).toEqual({ code: status.PERMISSION_DENIED });
    expect((await rawCall(address, channel())).password).toBe(PASSWORD);
  });

  it('answers a caller with a certificate from the internal CA', async () => {
    const env = readEnv({ RELAY_INTERNAL_CA: files.ca, RELAY_INTERNAL_CERT: files.client.cert, RELAY_INTERNAL_KEY: files.client.key });
    const client = createCredentialsClient(address.replace('127.0.0.1', 'localhost'), env.internalAuth!);
    const res = await client.getSmtpAuth({ sender: 'mail' }).finally(() => client.close());
    expect(res.password).toBe(PASSWORD);
  });
});
