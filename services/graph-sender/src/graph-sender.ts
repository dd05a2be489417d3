import { connectBus, ensureDurable, type Bus } from '@relay/bus';
import type { RelayConfig, RelayEnv } from '@relay/config';
import { once } from '@relay/core';
import { startOpsServer, type Logger, type OpsServer, type RunnableService } from '@relay/telemetry';

export interface GraphSenderOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
}

/**
 * Joins the bus and owns the durable consumer for `transport: graph` mail. Delivery through
 * Microsoft Graph is not built yet: until it is, graph mail stays stored in the dispatch stream
 * (QUEUED), never dropped, and is delivered by the version that has it.
 */
export async function createGraphSender(opts: GraphSenderOptions, overrides: { bus?: Bus } = {}): Promise<RunnableService> {
  const { env, config, logger } = opts;
  const bus = overrides.bus ?? (await connectBus({ servers: env.natsUrl, prefix: env.busPrefix, name: `relay-graph-sender:${process.pid}`, topology: { replicas: env.streamReplicas } }));
  let ops: OpsServer | undefined;
  return {
    async start() {
      await ensureDurable(bus.jsm, {
        stream: bus.names.dispatchStream,
        durable: bus.names.senderConsumer('graph'),
        filterSubject: bus.names.dispatchWildcard('graph'),
        ackWaitMs: 60_000,
        maxAckPending: 1_000,
      });
      const graphSenders = config.senders.filter((s) => s.transport === 'graph').map((s) => s.id);
      if (graphSenders.length) logger.warn({ senders: graphSenders }, 'Graph delivery is not available in this version; graph mail is kept queued');
      ops = await startOpsServer({ port: env.metricsPort, host: env.host, ready: () => bus.healthy() });
      return { metrics: ops.port };
    },
    stop: once(async () => {
      await ops?.close();
      if (!overrides.bus) await bus.close();
    }),
  };
}
