import type { Bus } from '@relay/bus';
import { requireEnvelopeKeys, requireInternalAuth, type RelayConfig, type RelayEnv, type SenderConfig } from '@relay/config';
import { once, within, type RunnableService } from '@relay/core';
import { createCredentialsClient } from '@relay/proto';
import { createLiveConfig } from '@relay/registry';
import { connectBusFor, createSenderWorker } from '@relay/service';
import { startOpsServer, type Logger, type OpsServer } from '@relay/telemetry';
import { AuthCache } from './auth-cache.js';
import { createSmtpDeliverer } from './deliver.js';
import { recordSentCopy } from './sent-copy/job.js';
import { createSentCopyWorker } from './sent-copy/worker.js';
import { startFeedbackReaders, type FeedbackReaders } from './feedback.js';
import { TransportPool } from './transports.js';

export interface SmtpSenderOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  /** relay.yaml, re-read when it changes. */
  configPath?: string;
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
  const live = await createLiveConfig({ bus, config, logger: opts.logger, configPath: opts.configPath, replicas: env.streamReplicas });
  const smtpSenders = (c: RelayConfig) => new Map(c.senders.filter((s) => s.transport === 'smtp').map((s) => [s.id, s]));
  let senders: Map<string, SenderConfig> = smtpSenders(config);
  const auth = new AuthCache(credentials);
  live.onChange((c) => {
    senders = smtpSenders(c);
    auth.clear();
  });
  const deliverer = createSmtpDeliverer(
    () => senders,
    auth,
    pools,
    (e, _sender, mail) => recordSentCopy(bus, { sender: e.sender, messageId: e.messageId, raw: mail.raw }, opts.logger),
  );
  // copy_to_sent: sent messages appended to their mailbox's Sent folder over IMAP.
  const sentCopy = createSentCopyWorker({
    bus,
    senders: () => senders,
    auth,
    retryInitialMs: config.delivery.retryInitialMs,
    retryMaxMs: config.delivery.retryMaxMs,
    log: opts.logger,
  });
  const worker = createSenderWorker('smtp', opts, { bus, envelopeKeys, concurrency: opts.concurrency ?? 256, deliver: (e) => deliverer.deliver(e) });
  let ops: OpsServer | undefined;
  let feedback: FeedbackReaders | undefined;
  return {
    async start() {
      await live.start();
      senders = smtpSenders(live.current());
      await worker.start();
      await sentCopy.start();
      // Bounces and other delivery reports, from the mailboxes of senders with feedback.imap.
      feedback = startFeedbackReaders(
        bus,
        () => senders.values(),
        (id, o) => auth.get(id, o),
        opts.logger,
      );
      ops = await startOpsServer({ port: env.metricsPort, host: env.internalHost, ready: () => bus.healthy() });
      return { metrics: ops.port };
    },
    stop: once(async () => {
      await worker.stop(env.graceMs);
      await sentCopy.stop(env.graceMs);
      if (feedback) await within(feedback.stop(), env.graceMs);
      await live.stop();
      pools.closeAll();
      credentials.close();
      await ops?.close();
      if (!overrides.bus) await bus.close();
    }),
  };
}
