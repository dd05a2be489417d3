import type { Redis } from 'ioredis';
import type { Bus } from '@relay/bus';
import { requireEnvelopeKeys, requireInternalAuth, type RelayConfig, type RelayEnv } from '@relay/config';
import { once, within, type RunnableService } from '@relay/core';
import { createCredentialsClient } from '@relay/proto';
import { createLiveConfig } from '@relay/registry';
import { connectBusFor, createRedis, createSenderWorker } from '@relay/service';
import { startOpsServer, type Logger, type OpsServer } from '@relay/telemetry';
import { createGraphDeliverer } from './deliver.js';
import { createGraphClient, type GraphTiming } from './graph-client.js';
import { createGraphTokens } from './graph-token.js';
import { startGraphFeedbackReaders, type GraphFeedbackReaders } from './graph-feedback.js';
import { createMailboxSlots, type SlotTiming } from './mailbox-slots.js';

export interface GraphSenderOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  /** relay.yaml, re-read when it changes. */
  configPath?: string;
  /** Messages one replica works on at once (the per-mailbox bound applies to their requests). */
  concurrency?: number;
  timing?: Partial<GraphTiming>;
  slotTiming?: Partial<SlotTiming>;
}

/**
 * Delivers `transport: graph` mail through Microsoft Graph: consumes the graph dispatch subject
 * (replicas share one durable consumer), sends each message with sendMail or, over 4 MB, as a
 * draft with upload sessions, and settles it through the shared dispatch worker.
 */
export async function createGraphSender(opts: GraphSenderOptions, overrides: { bus?: Bus; redis?: Redis } = {}): Promise<RunnableService> {
  const { env, config, logger } = opts;
  const internalAuth = requireInternalAuth(env.internalAuth, 'relay-graph-sender');
  const envelopeKeys = requireEnvelopeKeys(env);
  const bus = overrides.bus ?? (await connectBusFor('graph-sender', opts));
  const redis = overrides.redis ?? createRedis('queued', { url: env.redisUrl, name: 'relay-graph-sender' });
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis error'));
  const credentials = createCredentialsClient(env.credentialsAddr, internalAuth);
  const live = await createLiveConfig({ bus, config, logger, configPath: opts.configPath, replicas: env.streamReplicas });
  const graphSenders = (c: RelayConfig) => new Map(c.senders.filter((s) => s.transport === 'graph').map((s) => [s.id, s]));
  let senders = graphSenders(config);
  const tokens = createGraphTokens(credentials);
  live.onChange((c) => {
    senders = graphSenders(c);
    tokens.clear();
  });
  const client = createGraphClient({
    tokens,
    slots: createMailboxSlots(redis, env.busPrefix, opts.slotTiming),
    ...(opts.timing ? { timing: opts.timing } : {}),
  });
  const deliverer = createGraphDeliverer(() => senders, client);
  const worker = createSenderWorker('graph', opts, {
    bus,
    envelopeKeys,
    concurrency: opts.concurrency ?? 64,
    deliver: (e, stopping) => deliverer.deliver(e, stopping),
  });
  let ops: OpsServer | undefined;
  let feedback: GraphFeedbackReaders | undefined;
  const ready = async () => (await bus.healthy()) && redis.status === 'ready';
  return {
    async start() {
      await live.start();
      senders = graphSenders(live.current());
      await worker.start();
      // Bounces and other delivery reports, from the mailboxes of senders with feedback.graph.
      feedback = startGraphFeedbackReaders(bus, client, tokens, () => senders.values(), logger);
      ops = await startOpsServer({ port: env.metricsPort, host: env.internalHost, ready });
      return { metrics: ops.port };
    },
    stop: once(async () => {
      await worker.stop(env.graceMs);
      if (feedback) await within(feedback.stop(), env.graceMs);
      await live.stop();
      credentials.close();
      await ops?.close();
      if (!overrides.redis) await redis.quit().catch(() => redis.disconnect());
      if (!overrides.bus) await bus.close();
    }),
  };
}
