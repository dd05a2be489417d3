import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { connectBus, type Bus } from '@relay/bus';
import { requireMasterKey, type RelayConfig, type RelayEnv } from '@relay/config';
import { internalToken, once } from '@relay/core';
import { CredentialsService, toGrpcDefinition, toGrpcError, type GetSmtpAuthRequest, type GetSmtpAuthResponse } from '@relay/proto';
import { startOpsServer, type Logger, type OpsServer, type RunnableService } from '@relay/telemetry';
import { checkInternalToken } from './internal-auth.js';
import { smtpAuthFor } from './smtp-auth.js';

export interface CredentialsOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
}

export async function createCredentials(opts: CredentialsOptions, overrides: { bus?: Bus } = {}): Promise<RunnableService> {
  const { env, config, logger } = opts;
  const token = internalToken(requireMasterKey(env));
  const bus = overrides.bus ?? (await connectBus({ servers: env.natsUrl, prefix: env.busPrefix, name: `relay-credentials:${process.pid}` }));
  const senders = new Map(config.senders.map((s) => [s.id, s]));
  const server = new Server();
  server.addService(toGrpcDefinition(CredentialsService), {
    getSmtpAuth(call: ServerUnaryCall<GetSmtpAuthRequest, GetSmtpAuthResponse>, cb: sendUnaryData<GetSmtpAuthResponse>) {
      try {
        checkInternalToken(call.metadata, token);
        cb(null, smtpAuthFor(senders.get(call.request.sender), call.request.sender));
      } catch (err) {
        logger.warn({ sender: call.request.sender, err: (err as Error).message }, 'credentials refused');
        cb(toGrpcError(err));
      }
    },
  });
  let http: OpsServer | undefined;
  let ops: OpsServer | undefined;
  return {
    async start() {
      const grpcPort = await new Promise<number>((resolve, reject) =>
        server.bindAsync(`${env.host}:${env.credentialsPort}`, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
      );
      const ready = () => bus.healthy();
      http = await startOpsServer({ port: env.httpPort, host: env.host, ready });
      ops = await startOpsServer({ port: env.metricsPort, host: env.host, ready });
      return { grpc: grpcPort, http: http.port, metrics: ops.port };
    },
    stop: once(async () => {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await Promise.allSettled([http?.close(), ops?.close()]);
      if (!overrides.bus) await bus.close();
    }),
  };
}
