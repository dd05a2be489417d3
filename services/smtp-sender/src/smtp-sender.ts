import { connectBus, createDispatchWorker, type Bus } from '@relay/bus';
import { requireInternalAuth, type RelayConfig, type RelayEnv } from '@relay/config';
import { once } from '@relay/core';
import { createCredentialsClient } from '@relay/proto';
import { startOpsServer, type Logger, type OpsServer, type RunnableService } from '@relay/telemetry';
import { AuthCache } from './auth-cache.js';
import { createSmtpDeliverer } from './deliver.js';
import { TransportPool } from './transports.js';

export interface SmtpSenderOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  /** Messages one replica delivers at once (across all its senders' pools). */
  concurrency?: number;
}

export async function createSmtpSender(opts: SmtpSenderOptions, overrides: { bus?: Bus } = {}): Promise<RunnableService> {
  const { env, config, logger } = opts;
  const internalAuth = requireInternalAuth(env.internalAuth, 'relay-smtp-sender');
  const bus = overrides.bus ?? (await connectBus({ servers: env.natsUrl, prefix: env.busPrefix, name: `relay-smtp-sender:${process.pid}`, topology: { replicas: env.streamReplicas } }));
  const credentials = createCredentialsClient(env.credentialsAddr, internalAuth);
  const pools = new TransportPool();
  const senders = new Map(config.senders.filter((s) => s.transport === 'smtp').map((s) => [s.id, s]));
  const deliverer = createSmtpDeliverer(() => senders, new AuthCache(credentials), pools);
  const worker = createDispatchWorker({
    bus,
    transport: 'smtp',
    service: 'relay-smtp-sender',
    concurrency: opts.concurrency ?? 256,
    ackWaitMs: env.ackWaitMs,
    retry: config.delivery,
    deliver: (e) => deliverer.deliver(e),
    log: logger,
  });
  let ops: OpsServer | undefined;
  return {
    async start() {
      await worker.start();
      ops = await startOpsServer({ port: env.metricsPort, host: env.host, ready: () => bus.healthy() });
      return { metrics: ops.port };
    },
    stop: once(async () => {
      await worker.stop(env.graceMs);
      pools.closeAll();
      credentials.close();
      await ops?.close();
      if (!overrides.bus) await bus.close();
    }),
  };
}
