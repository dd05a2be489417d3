import { Server, ServerCredentials, status, type Metadata, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { connectBus, type Bus } from '@relay/bus';
import type { RelayConfig, RelayEnv } from '@relay/config';
import { ErrorCode, RelayError, InFlight, internalToken, once, within } from '@relay/core';
import { AdminService, MailService, toGrpcDefinition, toGrpcError, type BeginConsentRequest, type TestSenderRequest } from '@relay/proto';
import { addGrpcHealth, startOpsServer, type GrpcHealth, type Logger, type OpsServer, type RunnableService } from '@relay/telemetry';
import { createAuthenticator } from './auth.js';
import { createAdminForward } from './credentials-forward.js';
import { createMailHandlers, messageLimit, type IngestContext } from './mail-service.js';
import { createSmtpDoor, smtpDoorTls } from './smtp-door/index.js';

export interface IngestOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
}

/** gRPC room for the largest allowed message plus protobuf framing. */
const GRPC_OVERHEAD_BYTES = 8 * 1024 * 1024;

export async function createIngest(opts: IngestOptions, overrides: { bus?: Bus } = {}): Promise<RunnableService & { ctx: IngestContext }> {
  const { env, config, logger } = opts;
  const bus = overrides.bus ?? (await connectBus({ servers: env.natsUrl, prefix: env.busPrefix, name: `relay-ingest:${process.pid}`, topology: { replicas: env.streamReplicas } }));
  const ctx: IngestContext = {
    config,
    senders: new Map(config.senders.map((s) => [s.id, s])),
    bus,
    auth: createAuthenticator(config.clients),
    logger,
  };
  const inFlight = new InFlight();
  const server = new Server({
    // Large enough for the largest message any sender may take; each sender's own limit is checked per call.
    'grpc.max_receive_message_length': Math.max(config.limits.maxMessageBytes, ...config.senders.map((s) => messageLimit(config, s))) + GRPC_OVERHEAD_BYTES,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    // channelz (grpc-js's call and socket statistics, which nothing here serves) cost 4 % of ingest's
    // CPU per SendMail.
    'grpc.enable_channelz': 0,
  });
  const mail = createMailHandlers(ctx);
  const admin = createAdminForward(env.credentialsAddr, env.masterKey ? internalToken(env.masterKey) : undefined);
  server.addService(toGrpcDefinition(MailService), {
    sendMail: unary(logger, inFlight, mail.sendMail),
    getMessage: unary(logger, inFlight, mail.getMessage),
  });
  server.addService(toGrpcDefinition(AdminService), {
    testSender: unary(logger, inFlight, async (call: ServerUnaryCall<TestSenderRequest, unknown>) => {
      requireAdmin(ctx, call);
      if (!call.request.sender) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required');
      return admin.testSender(call.request.sender, call.request.to);
    }),
    beginConsent: unary(logger, inFlight, async (call: ServerUnaryCall<BeginConsentRequest, unknown>) => {
      requireAdmin(ctx, call);
      if (!call.request.sender) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required');
      return admin.beginConsent(call.request.sender);
    }),
  });
  const smtpDoor = createSmtpDoor(ctx, { host: env.host, port: env.smtpPort, smtpsPort: env.smtpsPort, tls: smtpDoorTls(env), graceMs: env.graceMs });
  let ops: OpsServer | undefined;
  let health: GrpcHealth | undefined;
  const ready = () => bus.healthy();

  return {
    ctx,
    async start() {
      health = addGrpcHealth(server, ['relay.v1.MailService', 'relay.v1.AdminService'], ready);
      await health.refresh();
      const grpcPort = await new Promise<number>((resolve, reject) =>
        server.bindAsync(`${env.host}:${env.grpcPort}`, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
      );
      const smtpPorts = await smtpDoor.start();
      ops = await startOpsServer({ port: env.metricsPort, host: env.host, ready });
      return { grpc: grpcPort, ...smtpPorts, metrics: ops.port };
    },
    stop: once(async () => {
      // Refuse new calls, let the ones in progress finish within the grace period.
      health?.close();
      await Promise.all([new Promise<void>((resolve) => server.tryShutdown(() => resolve())), smtpDoor.stop()]);
      if (!(await within(inFlight.idle(), env.graceMs))) logger.warn({ in_flight: inFlight.size }, 'grace period over');
      server.forceShutdown();
      await ops?.close();
      admin.close();
      if (!overrides.bus) await bus.close();
    }),
  };
}

function requireAdmin(ctx: IngestContext, call: { metadata: Metadata }) {
  const client = ctx.auth.authenticate(call.metadata);
  if (!client.admin) throw new RelayError(ErrorCode.PermissionDenied, `client "${client.name}" is not an admin client (admin: true)`);
}

function unary<Req, Res>(logger: Logger, inFlight: InFlight, fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    void inFlight.run(async () => {
      try {
        callback(null, await fn(call));
      } catch (err) {
        const e = toGrpcError(err);
        if (e.code === status.INTERNAL || e.code === status.UNAVAILABLE) logger.error({ err, path: call.getPath() }, 'call failed');
        callback(e);
      }
    });
  };
}

