import { connectBus, serviceBusOptions, type Bus, type ServiceKind } from '@relay/bus';
import { busTopology, type RelayConfig, type RelayEnv } from '@relay/config';
import type { Logger } from '@relay/telemetry';
import { Redis } from 'ioredis';

/** Connects a service to the bus: its connection name, credentials and inbox, and the topology relay.yaml gives. */
export function connectBusFor(kind: ServiceKind, opts: { env: RelayEnv; config: RelayConfig; logger: Logger }): Promise<Bus> {
  return connectBus({ ...serviceBusOptions(opts.env, kind, opts.logger), topology: busTopology(opts.env, opts.config) });
}

/**
 * How a service uses Redis. `fail-fast` (scheduler pacing, ingest's client budgets): a command
 * fails at once while Redis is away and after 2 s when it does not answer, because the caller has
 * a fallback (hold the mail, skip the limit) and must not queue behind an outage; the service
 * connects in start(). `queued` (credentials' token cache and locks, graph-sender's mailbox
 * slots): commands wait out a short reconnect, since the caller has nothing to do without them.
 */
export type RedisProfile = 'fail-fast' | 'queued';

export function createRedis(profile: RedisProfile, opts: { url: string; name: string }): Redis {
  const connectionName = `${opts.name}:${process.pid}`;
  if (profile === 'queued') return new Redis(opts.url, { maxRetriesPerRequest: 2, connectionName });
  return new Redis(opts.url, {
    connectionName,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (n) => Math.min(n * 200, 2_000),
    lazyConnect: true,
    commandTimeout: 2_000,
    // Many small commands from concurrent calls share a round trip.
    enableAutoPipelining: true,
  });
}
