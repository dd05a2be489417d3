import { create } from '@bufbuild/protobuf';
import { Server } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import type { Bus } from '@relay/bus';
import { requireInternalAuth, requireMasterKey, type RelayConfig, type RelayEnv } from '@relay/config';
import { once, type RunnableService } from '@relay/core';
import {
  BeginConsentResponseSchema,
  bindGrpc,
  CredentialsService,
  internalServerCredentials,
  toGrpcDefinition,
  unary,
  type BeginConsentRequest,
  type BeginConsentResponse,
  type GetGraphTokenRequest,
  type GetGraphTokenResponse,
  type GetSmtpAuthRequest,
  type GetSmtpAuthResponse,
  type TestSenderRequest,
  type TestSenderResponse,
} from '@relay/proto';
import { connectBusFor, createRedis } from '@relay/service';
import { addGrpcHealth, startOpsServer, type Logger, type OpsServer } from '@relay/telemetry';
import { createConsent } from './consent.js';
import { graphTokenFor } from './graph-auth.js';
import { testGraphSender } from './graph-test.js';
import { startCredentialsHttp, type CredentialsHttp } from './http-server.js';
import { CALLERS, checkInternalCaller, type CallerPolicy } from './internal-auth.js';
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
  const internalAuth = requireInternalAuth(env.internalAuth, 'relay-credentials');
  const box = createSecretBox(masterKey, env.oldMasterKeys ?? []);
  const bus = overrides.bus ?? (await connectBusFor('credentials', opts));
  const redis = overrides.redis ?? createRedis('queued', { url: env.redisUrl, name: 'relay-credentials' });
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
  /**
   * One internal call: the caller's certificate or internal token is checked first; a refusal is logged with
   * `refused` and answered with its gRPC status.
   */
  const internal = <Req extends { sender: string }, Res>(
    refused: string,
    callers: CallerPolicy,
    run: (req: Req) => Promise<Res>,
    done?: (req: Req, res: Res) => void,
  ) =>
    unary<Req, Res>(
      async (call) => {
        checkInternalCaller(call, internalAuth, callers);
        const res = await run(call.request);
        done?.(call.request, res);
        return res;
      },
      { onError: (err, _answer, call) => logger.warn({ sender: (call.request as Req).sender, err: (err as Error).message }, refused) },
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
    testSender: internal<TestSenderRequest, TestSenderResponse>(
      'sender test refused',
      CALLERS.testSender,
      async (req) => {
        const sender = senders.get(req.sender);
        const opts = req.to ? { to: req.to } : {};
        if (sender?.graph) return testGraphSender({ ...sender, graph: sender.graph }, req.sender, tokens, opts);
        return testSender(sender, req.sender, tokens, opts);
      },
      (req, res) => logger.info({ sender: req.sender, ok: res.ok, steps: res.steps.map((s) => `${s.name}:${s.ok ? 'ok' : 'failed'}`) }, 'sender tested'),
    ),
  });
  let http: CredentialsHttp | undefined;
  let ops: OpsServer | undefined;
  const ready = async () => (await bus.healthy()) && redis.status === 'ready';
  // The gRPC health checking protocol answers what /readyz answers, for the whole server and by name.
  const health = addGrpcHealth(server, ['relay.internal.v1.CredentialsService'], ready);
  return {
    async start() {
      const grpcPort = await bindGrpc(server, `${env.internalHost}:${env.credentialsPort}`, internalServerCredentials(internalAuth));
      http = await startCredentialsHttp({ port: env.httpPort, host: env.host, consent, ready, logger, tls: env.tls });
      ops = await startOpsServer({ port: env.metricsPort, host: env.internalHost, ready });
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
