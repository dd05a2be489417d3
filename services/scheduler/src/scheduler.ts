import type { RelayConfig, RelayEnv, SecretResolution, SenderConfig } from '@relay/config';
import { describe, once, type RunnableService } from '@relay/core';
import { createLiveConfig } from '@relay/registry';
import { connectBusFor, createRedis } from '@relay/service';
import { relayInstruments, startOpsServer, type Logger, type OpsServer } from '@relay/telemetry';
import { Intake, INTAKE_DEFAULTS, type IntakeOptions } from './intake.js';
import { SenderLane, LANE_DEFAULTS, type LaneOptions } from './lane.js';
import { createHeldSweeper } from './held-expiry.js';
import { pacingMetrics, registerQueueGauges } from './metrics.js';
import { PacingLog, type Bus } from '@relay/bus';
import type { Pacer } from './pacer.js';
import { RedisPacer } from './redis-pacer.js';

export interface SchedulerOptions {
  env: RelayEnv;
  config: RelayConfig;
  logger: Logger;
  lane?: Partial<LaneOptions>;
  intake?: Partial<IntakeOptions>;
  /** Re-read this file when it changes, applying new senders and rates without a restart. */
  configPath?: string;
  /** Environment for the config file's env: secrets on reload. */
  secretsEnv?: Record<string, string | undefined>;
  /** Which secrets a reload resolves; the scheduler needs none. Default `all`. */
  resolveSecrets?: SecretResolution;
  reloadIntervalMs?: number;
}

export type Scheduler = RunnableService & { reload(config: RelayConfig): Promise<void> };

export async function createScheduler(opts: SchedulerOptions, overrides: { bus?: Bus; pacer?: Pacer } = {}): Promise<Scheduler> {
  const { env, logger } = opts;
  const bus = overrides.bus ?? (await connectBusFor('scheduler', opts));
  // Fails fast while Redis is away: the pacer then holds the mail.
  const redis = overrides.pacer ? undefined : createRedis('fail-fast', { url: env.redisUrl, name: 'relay-scheduler' });
  redis?.on('error', () => {}); // reported by the pacer, once per outage
  const redisPacer = redis ? new RedisPacer(redis, new PacingLog(bus), env.busPrefix, logger) : undefined;
  const pacer: Pacer = overrides.pacer ?? redisPacer!;
  const laneOpts = { ...LANE_DEFAULTS, ackWaitMs: env.ackWaitMs, heldMaxAgeMs: opts.config.limits.heldMaxAgeMs, ...opts.lane };
  const lanes = new Map<string, SenderLane>();
  let senders = new Map<string, SenderConfig>();
  const intake = new Intake(bus, { sender: (id) => senders.get(id), holding: (id) => lanes.get(id)?.busy ?? false }, pacer, logger, {
    ...INTAKE_DEFAULTS,
    ackWaitMs: laneOpts.ackWaitMs,
    ...opts.intake,
  });
  const sweeper = createHeldSweeper({ bus, known: (id) => senders.has(id), maxAgeMs: () => laneOpts.heldMaxAgeMs, logger });
  let ops: OpsServer | undefined;
  let stopped = false;
  let unregisterGauges: (() => void) | undefined;

  async function reload(config: RelayConfig) {
    const next = new Map<string, SenderConfig>(config.senders.map((s) => [s.id, s]));
    senders = next;
    for (const [id, lane] of lanes) {
      const sender = next.get(id);
      if (sender) lane.update(sender);
      else {
        // Its mail stays in the held stream until a configuration has the sender again.
        lanes.delete(id);
        await lane.stop(env.graceMs);
      }
    }
    const added = [...next.values()].filter((s) => !lanes.has(s.id));
    for (const s of added) lanes.set(s.id, new SenderLane(bus, s, pacer, logger, laneOpts));
    await Promise.all(added.map((s) => lanes.get(s.id)!.start()));
  }

  // relay.yaml (re-read when it changes) and the registry: new senders and rates without a restart.
  const live = await createLiveConfig({
    bus,
    config: opts.config,
    logger,
    configPath: opts.configPath,
    ...(opts.secretsEnv ? { secretsEnv: opts.secretsEnv } : {}),
    resolveSecrets: opts.resolveSecrets ?? 'none',
    ...(opts.reloadIntervalMs ? { reloadIntervalMs: opts.reloadIntervalMs } : {}),
    replicas: env.streamReplicas,
  });
  live.onChange(async (config) => {
    if (stopped) return;
    await reload(config).then(
      () => logger.info({ senders: config.senders.length }, 'configuration reloaded'),
      (err: unknown) => logger.error({ err: describe(err) }, 'configuration reload failed'),
    );
  });

  return {
    reload,
    async start() {
      await redis?.connect().catch((err: unknown) => logger.error({ err: describe(err) }, 'Redis unavailable at start; paced senders hold until it answers'));
      await live.start();
      await reload(live.current());
      // The lanes first, so held mail has its consumer before new mail comes in.
      await intake.start();
      sweeper.start();
      unregisterGauges = registerQueueGauges(relayInstruments().meter, { bus, lanes: () => lanes.values() });
      ops = await startOpsServer({
        port: env.metricsPort,
        host: env.internalHost,
        ready: async () => (await bus.healthy()) && (!redis || redis.status === 'ready'),
        metrics: () => pacingMetrics(lanes.values(), redisPacer, intake),
      });
      return { metrics: ops.port };
    },
    stop: once(async () => {
      stopped = true;
      unregisterGauges?.();
      await live.stop();
      await Promise.allSettled([sweeper.stop(), ...[intake, ...lanes.values()].map((l) => l.stop(env.graceMs))]);
      await pacer.close();
      await ops?.close();
      redis?.disconnect();
      if (!overrides.bus) await bus.close();
    }),
  };
}
