import type { Bus } from '@relay/bus';
import { requireEnvelopeKeys, requireInternalAuth, type RelayConfig, type RelayEnv } from '@relay/config';
import { once, type RunnableService } from '@relay/core';
import { createCredentialsClient } from '@relay/proto';
import { connectBusFor, createSenderWorker } from '@relay/service';
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
  const { env, config } = opts;
  const internalAuth = requireInternalAuth(env.internalAuth, 'relay-smtp-sender');
  const envelopeKeys = requireEnvelopeKeys(env);
  const bus = overrides.bus ?? (await connectBusFor('smtp-sender', opts));
  const credentials = createCredentialsClient(env.credentialsAddr, internalAuth);
  const pools = new TransportPool();
  const senders = new Map(config.senders.filter((s) => s.transport === 'smtp').map((s) => [s.id, s]));
  const deliverer = createSmtpDeliverer(() => senders, new AuthCache(credentials), pools);
  const worker = createSenderWorker('smtp', opts, { bus, envelopeKeys, concurrency: opts.concurrency ?? 256, deliver: (e) => deliverer.deliver(e) });
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
