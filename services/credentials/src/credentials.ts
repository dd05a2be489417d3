import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Server } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import type { Bus } from '@relay/bus';
import { requireInternalAuth, requireMasterKey, SENDER_SECRET_FIELDS, type RelayConfig, type RelayEnv, type SecretResolution } from '@relay/config';
import { describe, ErrorCode, once, RelayError, type RunnableService } from '@relay/core';
import {
  BeginConsentResponseSchema,
  bindGrpc,
  CreateWebhookSecretResponseSchema,
  CompleteConsentResponseSchema,
  DeleteSenderSecretsResponseSchema,
  GetCredentialStatusResponseSchema,
  SecretStatusSchema,
  SetSenderSecretResponseSchema,
  SignWebhookResponseSchema,
  CredentialsService,
  internalServerCredentials,
  toGrpcDefinition,
  unary,
  type BeginConsentRequest,
  type BeginConsentResponse,
  type CompleteConsentRequest,
  type CompleteConsentResponse,
  type CreateWebhookSecretRequest,
  type CreateWebhookSecretResponse,
  type DeleteSenderSecretsRequest,
  type DeleteSenderSecretsResponse,
  type GetCredentialStatusRequest,
  type GetCredentialStatusResponse,
  type SetSenderSecretRequest,
  type SetSenderSecretResponse,
  type SignWebhookRequest,
  type SignWebhookResponse,
  type GetGraphTokenRequest,
  type GetGraphTokenResponse,
  type GetSmtpAuthRequest,
  type GetSmtpAuthResponse,
  type TestSenderRequest,
  type TestSenderResponse,
} from '@relay/proto';
import { createLiveConfig } from '@relay/registry';
import { connectBusFor, createRedis } from '@relay/service';
import { addGrpcHealth, relayInstruments, startOpsServer, type Logger, type OpsServer } from '@relay/telemetry';
import { consentQuery, createConsent } from './consent.js';
import { createExpiryMonitor, expiryStep, registerCredentialExpiryGauge, withExpiryStep } from './credential-expiry.js';
import { credentialStatusMessage, openCredentialStatus, type CredentialStatusStore } from './credential-status.js';
import { graphTokenFor } from './graph-auth.js';
import { graphClientSecretEnd } from './graph-secret-end.js';
import { testGraphSender } from './graph-test.js';
import { CALLERS, checkInternalCaller, type CallerPolicy } from './internal-auth.js';
import { openManagedSecrets } from './managed-secrets.js';
import { createOAuthTokens } from './oauth-tokens.js';
import { createSecretBox } from './secret-box.js';
import { openRefreshTokenStore } from './secret-store.js';
import { testSender } from './sender-test.js';
import { smtpAuthFor } from './smtp-auth.js';
import { TokenCache } from './token-cache.js';
import { redeemCode } from './token-providers.js';
import { refusalLine } from './refusal-log.js';
import { createWebhookSigning } from './webhook-signing.js';
import { openWebhookSecrets } from './webhook-secrets.js';

export interface CredentialsOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  /** relay.yaml, re-read when it changes. */
  configPath?: string;
  resolveSecrets?: SecretResolution;
}

const MAX_SECRET_BYTES = 16 * 1024;
const SENDER_ID = /^[A-Za-z0-9_-]{1,64}$/;

export interface CredentialsOverrides {
  bus?: Bus;
  redis?: Redis;
  /** Epoch ms for the credential expiry checks; tests move it. */
  now?: () => number;
}

export async function createCredentials(opts: CredentialsOptions, overrides: CredentialsOverrides = {}): Promise<RunnableService> {
  const { env, config, logger } = opts;
  const masterKey = requireMasterKey(env);
  const internalAuth = requireInternalAuth(env.internalAuth, 'relay-credentials');
  const box = createSecretBox(masterKey, env.oldMasterKeys ?? []);
  const bus = overrides.bus ?? (await connectBusFor('credentials', opts));
  const redis = overrides.redis ?? createRedis('queued', { url: env.redisUrl, name: 'relay-credentials' });
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis error'));
  const opened = await Promise.all([
    openRefreshTokenStore(bus, box, env.streamReplicas),
    openManagedSecrets(bus, box, env.streamReplicas, (err, key) => logger.error({ key, err: describe(err) }, 'managed secret cannot be opened')),
    openCredentialStatus(bus, env.streamReplicas),
    openWebhookSecrets(bus, box, env.streamReplicas),
  ]).catch(async (err: unknown) => {
    if (!overrides.bus) await bus.close();
    if (!overrides.redis) redis.disconnect();
    throw err;
  });
  const [store, managed, recorded, webhookSecrets] = opened;
  const now = overrides.now ?? Date.now;
  // Each token and consent also restarts the refresh token's clock in the expiry monitor.
  const status: CredentialStatusStore = {
    ...recorded,
    consented: async (sender, account, at) => {
      await recorded.consented(sender, account, at);
      expiry.note(sender, { consentedAt: (at ?? new Date()).toISOString() });
    },
    tokenObtained: async (sender, obtainedAt, expiresAt) => {
      await recorded.tokenObtained(sender, obtainedAt, expiresAt);
      expiry.note(sender, { tokenRefreshedAt: obtainedAt.toISOString() });
    },
  };
  // relay.yaml and the senders managed through the API, whose secrets are the sealed ones above.
  const live = await createLiveConfig({
    bus,
    config,
    logger,
    configPath: opts.configPath,
    resolveSecrets: opts.resolveSecrets ?? 'senders-only',
    replicas: env.streamReplicas,
    managedSecret: (sender, field) => managed.get(sender, field),
  });
  managed.onChange(() => live.refresh());
  const cache = new TokenCache(redis, box, env.busPrefix);
  const tokens = createOAuthTokens({ cache, store, logger, status });
  // One map, kept current in place: the consent flow and every call read it.
  const senders = new Map(config.senders.map((s) => [s.id, s]));
  live.onChange(async (c) => {
    // A sender whose settings changed gets a new token from where it now signs in (here and in Redis).
    const changed = c.senders.filter((s) => {
      const before = senders.get(s.id);
      return before && JSON.stringify(before) !== JSON.stringify(s);
    });
    await Promise.all(
      changed.map((s) => cache.drop(s.id).catch((err: unknown) => logger.warn({ sender: s.id, err: describe(err) }, 'cached token not dropped'))),
    );
    senders.clear();
    for (const s of c.senders) senders.set(s.id, s);
  });
  const keepAliveMs = env.tokenKeepAliveMs;
  const expiry = createExpiryMonitor({
    senders: () => senders.values(),
    facts: (sender) => recorded.get(sender),
    logger,
    now,
    readSecretEnd: graphClientSecretEnd(cache),
    ...(keepAliveMs
      ? {
          keepAlive: {
            afterMs: keepAliveMs,
            claim: async (sender, ttlMs) => (await redis.set(`${env.busPrefix}:token-keepalive:${sender}`, '1', 'PX', ttlMs, 'NX')) === 'OK',
            // As if the last token had been refused: a new one from the provider, single-flight like every refresh.
            refresh: async (sender, auth) => void (await tokens.get(sender, auth, { rejected: true })),
          },
        }
      : {}),
  });
  const webhookSigning = createWebhookSigning({ secrets: webhookSecrets, live, logger });
  const consent = createConsent({ senders, redis, box, store, cache, logger, prefix: env.busPrefix, publicUrl: env.publicUrl, redeemCode, status });

  const server = new Server();
  /**
   * One internal call: the caller's certificate or internal token is checked first; a refusal is logged with
   * `refused` and answered with its gRPC status.
   */
  const internal = <Req extends object, Res>(refused: string, callers: CallerPolicy, run: (req: Req) => Promise<Res>, done?: (req: Req, res: Res) => void) =>
    unary<Req, Res>(
      async (call) => {
        checkInternalCaller(call, internalAuth, callers);
        const res = await run(call.request);
        done?.(call.request, res);
        return res;
      },
      {
        onError: (err, _answer, call) => {
          const sender = (call.request as { sender?: string }).sender || undefined;
          logger.warn({ sender, err: (err as Error).message }, refusalLine(refused, sender, err));
        },
      },
    );
  server.addService(toGrpcDefinition(CredentialsService), {
    getSmtpAuth: internal<GetSmtpAuthRequest, GetSmtpAuthResponse>('credentials refused', CALLERS.getSmtpAuth, (req) =>
      smtpAuthFor(senders.get(req.sender), req.sender, tokens, { tokenRejected: req.tokenRejected }),
    ),
    getGraphToken: internal<GetGraphTokenRequest, GetGraphTokenResponse>('graph token refused', CALLERS.getGraphToken, (req) =>
      graphTokenFor(senders.get(req.sender), req.sender, tokens, { tokenRejected: req.tokenRejected }),
    ),
    beginConsent: internal<BeginConsentRequest, BeginConsentResponse>('consent refused', CALLERS.beginConsent, async (req) =>
      create(BeginConsentResponseSchema, { authorizeUrl: await consent.begin(req.sender) }),
    ),
    // The browser's redirect, relayed by ingest (which serves the public HTTP port): the answer is its page.
    completeConsent: internal<CompleteConsentRequest, CompleteConsentResponse>('consent callback refused', CALLERS.completeConsent, async (req) => {
      const r = await consent.callback(consentQuery(req));
      return create(CompleteConsentResponseSchema, { httpStatus: r.status, message: r.message });
    }),
    testSender: internal<TestSenderRequest, TestSenderResponse>(
      'sender test refused',
      CALLERS.testSender,
      async (req) => {
        const sender = senders.get(req.sender);
        const opts = req.to ? { to: req.to } : {};
        const res = sender?.graph
          ? await testGraphSender({ ...sender, graph: sender.graph }, req.sender, tokens, opts)
          : await testSender(sender, req.sender, tokens, opts);
        // Read after the test: a token it obtained counts as the refresh token's last use.
        return withExpiryStep(
          res,
          sender && expiryStep(sender, await recorded.get(req.sender).catch(() => ({})), now(), expiry.secretEndFromGraph(req.sender)),
        );
      },
      (req, res) =>
        logger.info(
          { sender: req.sender, ok: res.ok, steps: res.steps.map((s) => `${s.name}:${s.ok ? (s.warning ? 'warning' : 'ok') : 'failed'}`) },
          'sender tested',
        ),
    ),
    setSenderSecret: internal<SetSenderSecretRequest & { sender: string }, SetSenderSecretResponse>(
      'sender secret refused',
      CALLERS.setSenderSecret,
      async (req) => {
        if (!SENDER_ID.test(req.id)) throw new RelayError(ErrorCode.InvalidArgument, 'id: must be 1-64 letters, digits, "-" or "_"');
        if (!(SENDER_SECRET_FIELDS as readonly string[]).includes(req.field)) {
          throw new RelayError(ErrorCode.InvalidArgument, `field: "${req.field}" is not a secret field (${SENDER_SECRET_FIELDS.join(', ')})`);
        }
        if (!req.value || Buffer.byteLength(req.value) > MAX_SECRET_BYTES) {
          throw new RelayError(ErrorCode.InvalidArgument, `value: required, at most ${MAX_SECRET_BYTES} bytes`);
        }
        await managed.set(req.id, req.field, req.value);
        return create(SetSenderSecretResponseSchema, { secret: create(SecretStatusSchema, { field: req.field, set: true }) });
      },
      // Never the value: which sender and field only.
      (req) => logger.info({ sender: req.id, field: req.field }, 'sender secret set'),
    ),
    deleteSenderSecrets: internal<DeleteSenderSecretsRequest, DeleteSenderSecretsResponse>(
      'sender secrets not deleted',
      CALLERS.setSenderSecret,
      async (req) => {
        if (!SENDER_ID.test(req.sender)) throw new RelayError(ErrorCode.InvalidArgument, 'sender: must be 1-64 letters, digits, "-" or "_"');
        await Promise.all([managed.deleteSender(req.sender), store.forget(req.sender), cache.drop(req.sender), status.forget(req.sender)]);
        return create(DeleteSenderSecretsResponseSchema, {});
      },
    ),
    // Who consented and the token's times, for GetSender: facts only, never a token.
    getCredentialStatus: internal<GetCredentialStatusRequest, GetCredentialStatusResponse>(
      'credential status refused',
      CALLERS.getCredentialStatus,
      async (req) => {
        if (!SENDER_ID.test(req.sender)) throw new RelayError(ErrorCode.InvalidArgument, 'sender: must be 1-64 letters, digits, "-" or "_"');
        return create(GetCredentialStatusResponseSchema, { status: credentialStatusMessage(await status.get(req.sender)) });
      },
    ),
    createWebhookSecret: internal<CreateWebhookSecretRequest, CreateWebhookSecretResponse>(
      'webhook secret refused',
      CALLERS.createWebhookSecret,
      async (req) => {
        const made = await webhookSigning.create(req);
        return create(CreateWebhookSecretResponseSchema, {
          secret: made.secret,
          createdAt: timestampFromDate(made.createdAt),
          ...(made.previousUntil ? { previousUntil: timestampFromDate(made.previousUntil) } : {}),
        });
      },
    ),
    signWebhook: internal<SignWebhookRequest, SignWebhookResponse>('webhook signature refused', CALLERS.signWebhook, async (req) =>
      create(SignWebhookResponseSchema, { signature: await webhookSigning.sign(req) }),
    ),
  });
  let ops: OpsServer | undefined;
  const ready = async () => (await bus.healthy()) && redis.status === 'ready';
  // The gRPC health checking protocol answers what /readyz answers, for the whole server and by name.
  const health = addGrpcHealth(server, ['relay.internal.v1.CredentialsService'], ready);
  const unregisterExpiry = registerCredentialExpiryGauge(relayInstruments().meter, () => expiry.expiries(), now);
  return {
    async start() {
      await managed.start();
      await live.start();
      senders.clear();
      for (const s of live.current().senders) senders.set(s.id, s);
      expiry.start();
      const grpcPort = await bindGrpc(server, `${env.internalHost}:${env.credentialsPort}`, internalServerCredentials(internalAuth));
      ops = await startOpsServer({ port: env.metricsPort, host: env.internalHost, ready });
      return { grpc: grpcPort, metrics: ops.port };
    },
    stop: once(async () => {
      health.close();
      expiry.stop();
      unregisterExpiry();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await Promise.allSettled([ops?.close(), live.stop(), managed.stop()]);
      if (!overrides.redis) await redis.quit().catch(() => redis.disconnect());
      if (!overrides.bus) await bus.close();
    }),
  };
}
