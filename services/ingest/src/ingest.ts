import { Server, status, type Metadata, type ServerUnaryCall } from '@grpc/grpc-js';
import { createMessageIndexer, type Bus, type ConsumeLoop } from '@relay/bus';
import { requireEnvelopeKeys, type RelayConfig, type RelayEnv } from '@relay/config';
import { ErrorCode, RelayError, InFlight, describe, once, within, type RunnableService } from '@relay/core';
import { AdminService, MailService, toGrpcDefinition, unary, type UnaryOptions, type BeginConsentRequest, type TestSenderRequest } from '@relay/proto';
import { connectBusFor, createRedis } from '@relay/service';
import { addGrpcHealth, startOpsServer, type GrpcHealth, type Logger, type OpsServer } from '@relay/telemetry';
import { createAuthenticator } from './auth.js';
import { startBudgetRelease } from './budget-release.js';
import { createClientBudget, hasLimits } from './client-budget.js';
import { createAdminForward } from './credentials-forward.js';
import { createAdminMessageHandlers } from './admin-messages.js';
import { createQueueStatsHandler } from './admin-queue.js';
import { createWatchHub, type WatchHub, type WatchOptions } from './admin-watch.js';
import { isPaced } from './pacing-view.js';
import { addReflection } from './reflection.js';
import { createKeyInterceptor, listenGrpc, MAX_CONCURRENT_STREAMS, type GrpcListener } from './grpc-guard.js';
import { createMailHandlers, messageLimit, type IngestContext } from './mail-service.js';
import { createSmtpDoor, smtpDoorTls } from './smtp-door/index.js';

export interface IngestOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
}

/** gRPC room for the largest allowed message plus protobuf framing. */
const GRPC_OVERHEAD_BYTES = 8 * 1024 * 1024;

export async function createIngest(
  opts: IngestOptions,
  overrides: { bus?: Bus; watch?: Partial<WatchOptions> } = {},
): Promise<RunnableService & { ctx: IngestContext; watches: Pick<WatchHub, 'size'> }> {
  const { env, config, logger } = opts;
  const envelopeKey = requireEnvelopeKeys(env).current;
  const bus = overrides.bus ?? (await connectBusFor('ingest', opts));
  // Redis only when a client has limits or a sender is paced (GetQueueStats reads the pacing
  // state): without either, ingest needs no Redis. Fails fast while Redis is away: the limits are
  // then not enforced, and GetQueueStats reads the pacing log instead.
  const limited = config.clients.some((c) => hasLimits(c.limits));
  const redis = limited || config.senders.some((s) => isPaced(s.rate)) ? createRedis('fail-fast', { url: env.redisUrl, name: 'relay-ingest' }) : undefined;
  redis?.on('error', () => {}); // reported by the budget, once per outage
  const budget = redis && limited ? createClientBudget(redis, env.busPrefix, logger, config.delivery.maxAgeMs) : undefined;
  const ctx: IngestContext = {
    config,
    senders: new Map(config.senders.map((s) => [s.id, s])),
    bus,
    auth: createAuthenticator(config.clients),
    budget,
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
    interceptors: [createKeyInterceptor(ctx.auth, (path) => path.startsWith('/relay.v1.'))],
  });
  const mail = createMailHandlers(ctx);
  const admin = createAdminForward(env.credentialsAddr, env.internalAuth);
  server.addService(toGrpcDefinition(MailService), {
    sendMail: unary(mail.sendMail, calls),
    getMessage: unary(mail.getMessage, calls),
  });
  const messages = createAdminMessageHandlers(ctx);
  const getQueueStats = createQueueStatsHandler({ bus, auth: ctx.auth, senders: ctx.senders, redis, prefix: env.busPrefix, logger });
  const watch = createWatchHub(bus, ctx.auth, logger, overrides.watch);
  const indexer = createMessageIndexer(bus, logger);
  server.addService(toGrpcDefinition(AdminService), {
    listMessages: unary(messages.listMessages, calls),
    retryMessages: unary(messages.retryMessages, calls),
    cancelMessages: unary(messages.cancelMessages, calls),
    getQueueStats: unary(getQueueStats, calls),
    // A stream, not work in flight: the stop ends it rather than waiting for it.
    watchMessages: watch.watchMessages,
    testSender: unary(async (call: ServerUnaryCall<TestSenderRequest, unknown>) => {
      requireAdmin(ctx, call);
      if (!call.request.sender) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required');
      return admin.testSender(call.request.sender, call.request.to);
    }, calls),
    beginConsent: unary(async (call: ServerUnaryCall<BeginConsentRequest, unknown>) => {
      requireAdmin(ctx, call);
      if (!call.request.sender) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required');
      return admin.beginConsent(call.request.sender);
    }, calls),
  });
  // Reflection needs no key (like health checks): it describes the API, no mail or settings.
  addReflection(server);
  const smtpDoor = createSmtpDoor(ctx, { host: env.host, port: env.smtpPort, smtpsPort: env.smtpsPort, tls: smtpDoorTls(env), graceMs: env.graceMs });
  let ops: OpsServer | undefined;
  let grpc: GrpcListener | undefined;
  let release: ConsumeLoop | undefined;
  let health: GrpcHealth | undefined;
  const ready = () => bus.healthy();

  return {
    ctx,
    watches: watch,
    async start() {
      if (redis) {
        await redis
          .connect()
          .catch((err: unknown) =>
            logger.error(
              { err: describe(err) },
              'Redis unavailable at start; client limits are not enforced until it answers (queue stats read the pacing log)',
            ),
          );
      }
      if (budget) release = await startBudgetRelease(bus, budget, logger);
      await indexer.start();
      health = addGrpcHealth(server, ['relay.v1.MailService', 'relay.v1.AdminService'], ready);
      await health.refresh();
      grpc = await listenGrpc(server, { host: env.host, port: env.grpcPort, tls: env.tls, maxConnectionsPerPeer: env.grpcMaxConnectionsPerPeer, logger });
      const smtpPorts = await smtpDoor.start();
      ops = await startOpsServer({ port: env.metricsPort, host: env.internalHost, ready });
      return { grpc: grpc.port, ...smtpPorts, metrics: ops.port };
    },
    stop: once(async () => {
      // Refuse new calls, let the ones in progress finish within the grace period.
      health?.close();
      // Open watches end now (UNAVAILABLE): the shutdown below would otherwise wait for them.
      watch.closeAll();
      const listenerClosed = grpc?.close();
      // A watch whose client stopped reading cannot deliver its end: bounded by the grace period.
      await Promise.all([within(new Promise<void>((resolve) => server.tryShutdown(() => resolve())), env.graceMs), smtpDoor.stop()]);
      if (!(await within(inFlight.idle(), env.graceMs))) logger.warn({ in_flight: inFlight.size }, 'grace period over');
      server.forceShutdown();
      await listenerClosed;
      await ops?.close();
      release?.stop();
      await release?.done;
      redis?.disconnect();
      admin.close();
      await indexer.stop(env.graceMs);
      if (!overrides.bus) await bus.close();
    }),
  };
}

function requireAdmin(ctx: IngestContext, call: { metadata: Metadata }) {
  const client = ctx.auth.authenticate(call.metadata);
  if (!client.admin) throw new RelayError(ErrorCode.PermissionDenied, `client "${client.name}" is not an admin client (admin: true)`);
}
