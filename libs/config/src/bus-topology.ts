import type { RelayEnv } from './env.js';
import type { RelayConfig, StoreLimitsConfig } from './types.js';

/**
 * What every service passes to connectBus: stream replicas from the environment, store limits
 * and failed-mail retention from relay.yaml (the same for every service that reads one file).
 */
export function busTopology(
  env: Pick<RelayEnv, 'streamReplicas'>,
  config: Pick<RelayConfig, 'limits' | 'delivery'>,
): { replicas: number; failedRetentionMs: number; limits: StoreLimitsConfig } {
  return { replicas: env.streamReplicas, failedRetentionMs: config.delivery.failedRetentionMs, limits: config.limits.store };
}
