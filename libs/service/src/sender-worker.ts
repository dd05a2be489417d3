import type { RelayConfig, RelayEnv } from '@relay/config';
import { createDispatchWorker, type DispatchWorker, type DispatchWorkerOptions } from '@relay/dispatch';
import type { Logger } from '@relay/telemetry';

/** What a sender service brings to its dispatch worker; the rest comes from the environment and relay.yaml. */
export type SenderWorkerParts = Pick<DispatchWorkerOptions, 'bus' | 'envelopeKeys' | 'concurrency' | 'deliver'>;

/** A sender service's dispatch worker: its transport's durable consumer, RELAY_ACK_WAIT, and relay.yaml's retry policy. */
export function createSenderWorker(
  transport: 'smtp' | 'graph',
  ctx: { env: RelayEnv; config: RelayConfig; logger: Logger },
  parts: SenderWorkerParts,
): DispatchWorker {
  return createDispatchWorker({
    ...parts,
    transport,
    service: `relay-${transport}-sender`,
    ackWaitMs: ctx.env.ackWaitMs,
    retry: ctx.config.delivery,
    log: ctx.logger,
  });
}
