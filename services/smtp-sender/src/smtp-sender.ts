import { connectBus, serviceBusOptions, type Bus } from '@relay/bus';
import { createDispatchWorker } from '@relay/dispatch';
import { busTopology, requireEnvelopeKeys, requireInternalAuth, type RelayConfig, type RelayEnv } from '@relay/config';
import { once, type RunnableService } from '@relay/core';
import { createCredentialsClient } from '@relay/proto';
import { startOpsServer, type Logger, type OpsServer } from '@relay/telemetry';
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
  const envelopeKeys = requireEnvelopeKeys(env);
  const bus = overrides.bus ?? (await connectBus({ ...serviceBusOptions(env, 'smtp-sender', logger), topology: busTopology(env, opts.config) }));
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
    envelopeKeys,
    deliver: (e) => deliverer.deliver(e),
    log: logger,
  });
  let ops: OpsServer | undefined;
  return {
    async start() {
      await worker.start();
      ops = await startOpsServer({ port: env.metricsPort, host: env.internalHost, ready: () => bus.healthy() });
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
