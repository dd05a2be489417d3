import { create } from '@bufbuild/protobuf';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { connectBus, type Bus } from '@relay/bus';
import { requireMasterKey, type RelayConfig, type RelayEnv } from '@relay/config';
import { internalToken, once } from '@relay/core';
import {
  BeginConsentResponseSchema,
  CredentialsService,
  toGrpcDefinition,
  toGrpcError,
  type BeginConsentRequest,
  type BeginConsentResponse,
  type GetGraphTokenRequest,
  type GetGraphTokenResponse,
  type GetSmtpAuthRequest,
  type GetSmtpAuthResponse,
  type TestSenderRequest,
  type TestSenderResponse,
} from '@relay/proto';
import { addGrpcHealth, startOpsServer, type Logger, type OpsServer, type RunnableService } from '@relay/telemetry';
import { createConsent } from './consent.js';
import { graphTokenFor } from './graph-auth.js';
import { testGraphSender } from './graph-test.js';
import { startCredentialsHttp, type CredentialsHttp } from './http-server.js';
import { checkInternalToken } from './internal-auth.js';
import { createOAuthTokens } from './oauth-tokens.js';
import { createSecretBox } from './secret-box.js';
import { openRefreshTokenStore } from './secret-store.js';
import { testSender } from './sender-test.js';
import { smtpAuthFor } from './smtp-auth.js';
import { TokenCache } from './token-cache.js';
import { redeemCode } from './token-providers.js';

export interface CredentialsOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
}

export async function createCredentials(opts: CredentialsOptions, overrides: { bus?: Bus; redis?: Redis } = {}): Promise<RunnableService> {
  const { env, config, logger } = opts;
  const masterKey = requireMasterKey(env);
  const token = internalToken(masterKey);
  const box = createSecretBox(masterKey, env.oldMasterKeys ?? []);
  const bus = overrides.bus ?? (await connectBus({ servers: env.natsUrl, prefix: env.busPrefix, name: `relay-credentials:${process.pid}`, topology: { replicas: env.streamReplicas } }));
  const redis = overrides.redis ?? new Redis(env.redisUrl, { maxRetriesPerRequest: 2, connectionName: `relay-credentials:${process.pid}` });
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis error'));
  const store = await openRefreshTokenStore(bus, box, env.streamReplicas).catch(async (err: unknown) => {
    if (!overrides.bus) await bus.close();
    if (!overrides.redis) redis.disconnect();
    throw err;
  });
  const cache = new TokenCache(redis, box, env.busPrefix);
  const tokens = createOAuthTokens({ cache, store, logger });
  const senders = new Map(config.senders.map((s) => [s.id, s]));
  const consent = createConsent({ senders, redis, box, store, cache, logger, prefix: env.busPrefix, publicUrl: env.publicUrl, redeemCode });

  const server = new Server();
  server.addService(toGrpcDefinition(CredentialsService), {
    getSmtpAuth(call: ServerUnaryCall<GetSmtpAuthRequest, GetSmtpAuthResponse>, cb: sendUnaryData<GetSmtpAuthResponse>) {
      void (async () => {
        checkInternalToken(call.metadata, token);
        return smtpAuthFor(senders.get(call.request.sender), call.request.sender, tokens, { tokenRejected: call.request.tokenRejected });
      })().then(
        (res) => cb(null, res),
        (err: unknown) => {
          logger.warn({ sender: call.request.sender, err: (err as Error).message }, 'credentials refused');
          cb(toGrpcError(err));
        },
      );
    },
    getGraphToken(call: ServerUnaryCall<GetGraphTokenRequest, GetGraphTokenResponse>, cb: sendUnaryData<GetGraphTokenResponse>) {
      void (async () => {
        checkInternalToken(call.metadata, token);
        return graphTokenFor(senders.get(call.request.sender), call.request.sender, tokens, { tokenRejected: call.request.tokenRejected });
      })().then(
        (res) => cb(null, res),
        (err: unknown) => {
          logger.warn({ sender: call.request.sender, err: (err as Error).message }, 'graph token refused');
          cb(toGrpcError(err));
        },
      );
    },
    beginConsent(call: ServerUnaryCall<BeginConsentRequest, BeginConsentResponse>, cb: sendUnaryData<BeginConsentResponse>) {
      void (async () => {
        checkInternalToken(call.metadata, token);
        return create(BeginConsentResponseSchema, { authorizeUrl: await consent.begin(call.request.sender) });
      })().then(
        (res) => cb(null, res),
        (err: unknown) => {
          logger.warn({ sender: call.request.sender, err: (err as Error).message }, 'consent refused');
          cb(toGrpcError(err));
        },
      );
    },
    testSender(call: ServerUnaryCall<TestSenderRequest, TestSenderResponse>, cb: sendUnaryData<TestSenderResponse>) {
      void (async () => {
        checkInternalToken(call.metadata, token);
        const sender = senders.get(call.request.sender);
        const opts = call.request.to ? { to: call.request.to } : {};
        if (sender?.graph) return testGraphSender({ ...sender, graph: sender.graph }, call.request.sender, tokens, opts);
        return testSender(sender, call.request.sender, tokens, opts);
      })().then(
        (res) => {
          logger.info({ sender: call.request.sender, ok: res.ok, steps: res.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`) }, 'sender tested');
          cb(null, res);
        },
        (err: unknown) => {
          logger.warn({ sender: call.request.sender, err: (err as Error).message }, 'sender test refused');
          cb(toGrpcError(err));
        },
      );
    },
  });
  let http: CredentialsHttp | undefined;
  let ops: OpsServer | undefined;
  const ready = async () => (await bus.healthy()) && redis.status === 'ready';
  // The gRPC health checking protocol answers what /readyz answers, for the whole server and by name.
  const health = addGrpcHealth(server, ['relay.internal.v1.CredentialsService'], ready);
  return {
    async start() {
      const grpcPort = await new Promise<number>((resolve, reject) =>
        server.bindAsync(`${env.host}:${env.credentialsPort}`, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
      );
      http = await startCredentialsHttp({ port: env.httpPort, host: env.host, consent, ready, logger });
      ops = await startOpsServer({ port: env.metricsPort, host: env.host, ready });
      return { grpc: grpcPort, http: http.port, metrics: ops.port };
    },
    stop: once(async () => {
      health.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await Promise.allSettled([http?.close(), ops?.close()]);
      if (!overrides.redis) await redis.quit().catch(() => redis.disconnect());
      if (!overrides.bus) await bus.close();
    }),
  };
}

