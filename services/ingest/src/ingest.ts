import { Server, status, type Metadata } from '@grpc/grpc-js';
import { createMessageIndexer, watchSuppressions, type Bus, type ConsumeLoop, type SuppressionList } from '@relay/bus';
import { requireEnvelopeKeys, type RelayConfig, type RelayEnv, type SecretResolution } from '@relay/config';
import { ErrorCode, RelayError, InFlight, describe, once, within, type RunnableService } from '@relay/core';
import { AdminService, MailService, toGrpcDefinition, unary, type UnaryOptions, type BeginConsentRequest, type TestSenderRequest } from '@relay/proto';
import { createLiveConfig } from '@relay/registry';
import { connectBusFor, createRedis } from '@relay/service';
import { addGrpcHealth, startOpsServer, type GrpcHealth, type Logger, type OpsServer } from '@relay/telemetry';
import { createAuthenticator, requireAdmin, type Authenticator } from './auth.js';
import { startBudgetRelease } from './budget-release.js';
import { createClientBudget, hasLimits, type ClientBudget } from './client-budget.js';
import { createAdminForward } from './credentials-forward.js';
import { createAdminMessageHandlers } from './admin-messages.js';
import { createAdminRegistryHandlers } from './admin-registry.js';
import { createQueueStatsHandler } from './admin-queue.js';
import { createWatchHub, type WatchHub, type WatchOptions } from './admin-watch.js';
import { isPaced } from './pacing-view.js';
import { addReflection } from './reflection.js';
import { createKeyInterceptor, listenGrpc, MAX_CONCURRENT_STREAMS, type GrpcListener } from './grpc-guard.js';
import { createMailHandlers, messageLimit, type IngestContext } from './mail-service.js';
import { createSmtpDoor, smtpDoorTls } from './smtp-door/index.js';
import { startPublicHttp, type PublicHttp } from './public-http.js';
import { randomBytes } from 'node:crypto';
import { createConsoleApi, type Handler } from './console/api.js';
import { DEFAULT_CONSOLE_ASSETS, serveAssets } from './console/assets.js';
import { createConsoleRoutes, DEFAULT_SIGN_IN_TTL_MS } from './console/console-http.js';
import { createConsoleExpiryCheck } from './console/credential-expiry.js';
import { createOidcSignIn, type OidcSignIn } from './console/oidc.js';
import { createQueueEvents, type QueueEventsLimits } from './console/queue-events.js';
import { openRevocations } from './console/revocations.js';
import { createSigner } from './console/session.js';
import { createWebhookDeliveriesHandler } from './webhooks/admin.js';
import { createSuppressionHandlers } from './admin-suppressions.js';
import { createWebhooks, type WebhooksOptions } from './webhooks/webhooks.js';

export interface IngestOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  /** relay.yaml, re-read when it changes. */
  configPath?: string;
  resolveSecrets?: SecretResolution;
  /** The console's built front end (console/dist by default). */
  consoleAssets?: string;
}

/** gRPC room for the largest allowed message plus protobuf framing. */
const GRPC_OVERHEAD_BYTES = 8 * 1024 * 1024;

/** How often the console's sign-in credential is checked for its end (hourly, as the senders'). */
const CONSOLE_EXPIRY_CHECK_MS = 3_600_000;

export async function createIngest(
  opts: IngestOptions,
  overrides: { bus?: Bus; watch?: Partial<WatchOptions>; queueEvents?: Partial<QueueEventsLimits>; webhooks?: Partial<WebhooksOptions> } = {},
): Promise<RunnableService & { ctx: IngestContext; watches: Pick<WatchHub, 'size'>; queueEvents: { size: number } }> {
  const { env, config, logger } = opts;
  const envelopeKey = requireEnvelopeKeys(env).current;
  const bus = overrides.bus ?? (await connectBusFor('ingest', opts));
  const live = await createLiveConfig({
    bus,
    config,
    logger,
    configPath: opts.configPath,
    resolveSecrets: opts.resolveSecrets ?? 'callers-only',
    replicas: env.streamReplicas,
  }).catch(async (err: unknown) => {
    if (!overrides.bus) await bus.close();
    throw err;
  });
  const signOuts = await openRevocations({
    bus,
    lifetimeMs: config.console?.sessionTtlMs ?? DEFAULT_SIGN_IN_TTL_MS,
    replicas: env.streamReplicas,
    logger,
  }).catch(async (err: unknown) => {
    if (!overrides.bus) await bus.close();
    throw err;
  });
  // Client limits (Redis): started once a client has limits, at start or when one gets them.
  let redis: ReturnType<typeof createRedis> | undefined;
  let budget: ClientBudget | undefined;
  let suppressions: SuppressionList | undefined;
  const ctx: IngestContext = {
    config,
    senders: new Map(config.senders.map((s) => [s.id, s])),
    bus,
    auth: createAuthenticator(config.clients),
    budget: undefined,
    logger,
    envelopeKey,
  };
  // Every call counts as work in flight; one that fails for the relay's own reasons is logged.
  const inFlight = new InFlight();
  const calls: UnaryOptions = {
    inFlight,
    onError: (err, e, call) => {
      if (e.code === status.INTERNAL || e.code === status.UNAVAILABLE) logger.error({ err, path: call.getPath() }, 'call failed');
    },
  };
  const server = new Server({
    // Large enough for the largest message any sender may take; each sender's own limit is checked per call.
    'grpc.max_receive_message_length': Math.max(config.limits.maxMessageBytes, ...config.senders.map((s) => messageLimit(config, s))) + GRPC_OVERHEAD_BYTES,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    // channelz: grpc-js's call and socket statistics, which nothing here serves, kept for every call.
    'grpc.enable_channelz': 0,
    'grpc.max_concurrent_streams': MAX_CONCURRENT_STREAMS,
    // The key is checked before a call's body is read; health checks need none.
    interceptors: [
      createKeyInterceptor({ authenticate: (md) => ctx.auth.authenticate(md), authorizeSender: (c, s) => ctx.auth.authorizeSender(c, s) }, (path) =>
        path.startsWith('/relay.v1.'),
      ),
    ],
  });
  const mail = createMailHandlers(ctx);
  const admin = createAdminForward(env.credentialsAddr, env.internalAuth);
  server.addService(toGrpcDefinition(MailService), {
    sendMail: unary(mail.sendMail, calls),
    getMessage: unary(mail.getMessage, calls),
  });
  const messages = createAdminMessageHandlers(ctx);
  const registry = createAdminRegistryHandlers({
    bus,
    logger,
    live,
    credentials: admin,
    get auth() {
      return ctx.auth;
    },
  });
  // The caller's key is checked against the configuration in force at each call.
  const auth: Authenticator = { authenticate: (md) => ctx.auth.authenticate(md), authorizeSender: (c, sender) => ctx.auth.authorizeSender(c, sender) };
  const getQueueStats = createQueueStatsHandler({
    bus,
    auth,
    get senders() {
      return ctx.senders;
    },
    get redis() {
      return redis;
    },
    prefix: env.busPrefix,
    logger,
  });
  const watch = createWatchHub(bus, auth, logger, overrides.watch);
  const indexer = createMessageIndexer(bus, logger);
  const webhooks = createWebhooks(
    bus,
    logger,
    {
      retryInitialMs: config.delivery.webhookRetryInitialMs,
      retryMaxMs: config.delivery.webhookRetryMaxMs,
      maxAgeMs: config.delivery.webhookMaxAgeMs,
      ...overrides.webhooks,
    },
    (client, url, id, at, payload) => admin.signWebhook(client, url, id, at, payload),
  );
  // AdminService's unary calls: served over gRPC, and called in process by the console's API.
  const adminCalls = {
    listMessages: messages.listMessages,
    retryMessages: messages.retryMessages,
    cancelMessages: messages.cancelMessages,
    listSenders: registry.listSenders,
    getSender: registry.getSender,
    putSender: registry.putSender,
    deleteSender: registry.deleteSender,
    setSenderSecret: registry.setSenderSecret,
    listClients: registry.listClients,
    putClient: registry.putClient,
    createApiKey: registry.createApiKey,
    revokeApiKey: registry.revokeApiKey,
    createSmtpPassword: registry.createSmtpPassword,
    createWebhookSecret: registry.createWebhookSecret,
    listWebhookDeliveries: createWebhookDeliveriesHandler({ auth, config: () => ctx.config, webhooks }),
    ...createSuppressionHandlers({ auth, list: () => suppressions }),
    getQueueStats,
    testSender: async (call: { metadata: Metadata; request: TestSenderRequest }) => {
      requireAdmin(ctx.auth, call.metadata);
      if (!call.request.sender) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required');
      return admin.testSender(call.request.sender, call.request.to);
    },
    beginConsent: async (call: { metadata: Metadata; request: BeginConsentRequest }) => {
      requireAdmin(ctx.auth, call.metadata);
      if (!call.request.sender) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required');
      return admin.beginConsent(call.request.sender);
    },
  };
  server.addService(toGrpcDefinition(AdminService), {
    ...Object.fromEntries(Object.entries(adminCalls).map(([name, fn]) => [name, unary(fn as Parameters<typeof unary>[0], calls)])),
    // A stream, not work in flight: the stop ends it rather than waiting for it.
    watchMessages: watch.watchMessages,
  });
  let oidc: { key: string; signIn: OidcSignIn } | undefined;
  const consoleApi = createConsoleApi({ ...adminCalls, getMessage: mail.getMessage } as unknown as Record<string, Handler>);
  const queueEvents = createQueueEvents({ api: consoleApi, feed: watch, logger, limits: overrides.queueEvents });
  // The console's own sign-in credential: warned about before it runs out, like the senders'.
  const consoleExpiry = createConsoleExpiryCheck({ config: () => ctx.config.console, logger });
  let consoleExpiryTimer: NodeJS.Timeout | undefined;
  const consoleRoutes = createConsoleRoutes({
    config: () => ctx.config,
    api: consoleApi,
    queueEvents,
    signer: createSigner(env.consoleSessionKey ?? randomBytes(32)),
    signOuts,
    publicUrl: env.publicUrl,
    secure: env.tls !== undefined || env.publicUrl.startsWith('https:'),
    oidc: () => {
      const c = ctx.config.console;
      if (!c) return undefined;
      const key = JSON.stringify([c.issuer, c.clientId, c.clientSecret?.reveal(), c.clientCertificate?.thumbprintSha256]);
      if (oidc?.key !== key) oidc = { key, signIn: createOidcSignIn(c, `${env.publicUrl}/auth/callback`) };
      return oidc.signIn;
    },
    demoToken: env.consoleDemoToken,
    traceUrlTemplate: env.traceUrlTemplate,
    logger,
    assets: serveAssets(opts.consoleAssets ?? DEFAULT_CONSOLE_ASSETS),
  });
  // Reflection needs no key (like health checks): it describes the API, no mail or settings.
  addReflection(server);
  const smtpDoor = createSmtpDoor(ctx, { host: env.host, port: env.smtpPort, smtpsPort: env.smtpsPort, tls: smtpDoorTls(env), graceMs: env.graceMs });
  let ops: OpsServer | undefined;
  let http: PublicHttp | undefined;
  let grpc: GrpcListener | undefined;
  let release: ConsumeLoop | undefined;
  let health: GrpcHealth | undefined;
  const ready = () => bus.healthy();

  /** relay.yaml and the registry, merged: in force for the next call and SMTP transaction. */
  function applyConfig(next: RelayConfig) {
    ctx.config = next;
    ctx.senders = new Map(next.senders.map((s) => [s.id, s]));
    ctx.auth = createAuthenticator(next.clients);
    watch.recheck();
    if (webhooksStarted) void webhooks.apply(next.clients);
    const limited = next.clients.some((c) => hasLimits(c.limits));
    if (limited || next.senders.some((s) => isPaced(s.rate))) ensureRedis();
    if (limited && !budget) startBudget(next);
  }

  /**
   * Redis once a client has limits or a sender is paced (GetQueueStats reads the pacing state):
   * without either, ingest needs no Redis. Fails fast while Redis is away: the limits are then not
   * enforced, and GetQueueStats reads the pacing log instead.
   */
  function ensureRedis() {
    if (redis) return redis;
    const r = (redis = createRedis('fail-fast', { url: env.redisUrl, name: 'relay-ingest' }));
    r.on('error', () => {}); // reported by the budget, once per outage
    redisStarted = r
      .connect()
      .catch((err: unknown) =>
        logger.error({ err: describe(err) }, 'Redis unavailable; client limits are not enforced until it answers (queue stats read the pacing log)'),
      );
    return r;
  }
  let redisStarted: Promise<void> | undefined;

  function startBudget(first: RelayConfig) {
    const r = ensureRedis();
    const b = (budget = createClientBudget(r, env.busPrefix, logger, first.delivery.maxAgeMs, Date.now, redisStarted));
    ctx.budget = b;
    budgetStarted = (async () => {
      await redisStarted;
      release = await startBudgetRelease(bus, b, logger);
    })();
  }
  let budgetStarted: Promise<void> | undefined;
  let webhooksStarted = false;

  return {
    ctx,
    watches: watch,
    queueEvents,
    async start() {
      await live.start();
      applyConfig(live.current());
      live.onChange(applyConfig);
      await budgetStarted;
      await indexer.start();
      await webhooks.start(ctx.config.clients);
      webhooksStarted = true;
      await signOuts.start();
      consoleExpiry.check();
      consoleExpiryTimer = setInterval(() => consoleExpiry.check(), CONSOLE_EXPIRY_CHECK_MS).unref();
      suppressions = await watchSuppressions(bus, {
        onError: (err) => logger.error({ err: describe(err), bucket: bus.names.suppressedBucket }, 'suppression watch ended'),
        onFull: (size) =>
          logger.warn({ bucket: bus.names.suppressedBucket, held: size }, 'suppression list full: newer hard bounces are not checked at SendMail'),
      });
      ctx.suppressions = suppressions;
      health = addGrpcHealth(server, ['relay.v1.MailService', 'relay.v1.AdminService'], ready);
      await health.refresh();
      grpc = await listenGrpc(server, { host: env.host, port: env.grpcPort, tls: env.tls, maxConnectionsPerPeer: env.grpcMaxConnectionsPerPeer, logger });
      const smtpPorts = await smtpDoor.start();
      http = await startPublicHttp({
        port: env.httpPort,
        host: env.host,
        tls: env.tls,
        ready,
        logger,
        completeConsent: (f) => admin.completeConsent(f),
        routes: [consoleRoutes],
      });
      ops = await startOpsServer({ port: env.metricsPort, host: env.internalHost, ready });
      return { grpc: grpc.port, ...smtpPorts, http: http.port, metrics: ops.port };
    },
    stop: once(async () => {
      // Refuse new calls, let the ones in progress finish within the grace period.
      health?.close();
      // Open watches end now (UNAVAILABLE): the shutdown below would otherwise wait for them.
      // So do the console's live streams (an `end` event; the HTTP close cuts what remains).
      watch.closeAll();
      queueEvents.closeAll();
      const listenerClosed = grpc?.close();
      // A watch whose client stopped reading cannot deliver its end: bounded by the grace period.
      await Promise.all([within(new Promise<void>((resolve) => server.tryShutdown(() => resolve())), env.graceMs), smtpDoor.stop()]);
      if (!(await within(inFlight.idle(), env.graceMs))) logger.warn({ in_flight: inFlight.size }, 'grace period over');
      server.forceShutdown();
      await listenerClosed;
      await Promise.allSettled([http?.close(), ops?.close()]);
      await budgetStarted?.catch(() => {});
      release?.stop();
      await release?.done;
      redis?.disconnect();
      admin.close();
      await live.stop();
      await webhooks.stop(env.graceMs);
      clearInterval(consoleExpiryTimer);
      await signOuts.stop();
      await suppressions?.stop();
      await indexer.stop(env.graceMs);
      if (!overrides.bus) await bus.close();
    }),
  };
}
