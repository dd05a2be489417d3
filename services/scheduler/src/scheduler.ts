import { connectBus, type Bus } from '@relay/bus';
import type { RelayConfig, RelayEnv } from '@relay/config';
import { once } from '@relay/core';
import { startOpsServer, type Logger, type OpsServer, type RunnableService } from '@relay/telemetry';
import { SenderLane, LANE_DEFAULTS, type LaneOptions } from './lane.js';
import { unpaced, type Pacer } from './pacer.js';

export interface SchedulerOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  lane?: Partial<LaneOptions>;
}

export async function createScheduler(opts: SchedulerOptions, overrides: { bus?: Bus; pacer?: Pacer } = {}): Promise<RunnableService> {
  const { env, config, logger } = opts;
  const bus = overrides.bus ?? (await connectBus({ servers: env.natsUrl, prefix: env.busPrefix, name: `relay-scheduler:${process.pid}` }));
  const pacer = overrides.pacer ?? unpaced;
  const laneOpts = { ...LANE_DEFAULTS, ackWaitMs: env.ackWaitMs, ...opts.lane };
  const lanes = config.senders.map((s) => new SenderLane(bus, s, pacer, logger, laneOpts));
  let ops: OpsServer | undefined;
  return {
    async start() {
      await Promise.all(lanes.map((l) => l.start()));
      ops = await startOpsServer({ port: env.metricsPort, host: env.host, ready: () => bus.healthy() });
      return { metrics: ops.port };
    },
    stop: once(async () => {
      await Promise.allSettled(lanes.map((l) => l.stop(env.graceMs)));
      await pacer.close();
      await ops?.close();
      if (!overrides.bus) await bus.close();
    }),
  };
}
