import { fromBinary } from '@bufbuild/protobuf';
import { BATCH_PULL_DEFAULTS, batchPull, consumeLoop, ensureDurable, type Bus, type ConsumeLoop } from '@relay/bus';
import { MessageState, StatusEventSchema } from '@relay/proto';
import type { Logger } from '@relay/telemetry';
import type { ClientBudget } from './client-budget.js';

/** Shared by every ingest replica: each status event is seen by one of them. */
const DURABLE = 'ingest-client-budget';
const ACK_WAIT_MS = 30_000;

/** States after which a message no longer waits in the store. */
const DONE = new Set<MessageState>([MessageState.SENT, MessageState.FAILED]);

/**
 * Follows the status stream and gives back a message's share of its client's stored quota once
 * it was sent or failed for good.
 */
export async function startBudgetRelease(bus: Bus, budget: ClientBudget, logger: Logger): Promise<ConsumeLoop> {
  const stream = bus.names.statusStream;
  await ensureDurable(bus.jsm, { stream, durable: DURABLE, filterSubject: bus.names.statusWildcard, ackWaitMs: ACK_WAIT_MS, maxAckPending: 1_000 });
  return consumeLoop(
    async () => batchPull(bus.nc, stream, DURABLE, { batch: 256, lingerMs: BATCH_PULL_DEFAULTS.lingerMs }),
    async (m) => {
      let ev;
      try {
        ev = fromBinary(StatusEventSchema, m.data);
      } catch {
        m.term();
        return;
      }
      if (DONE.has(ev.state)) await budget.release(ev.messageId);
      m.ack();
    },
    logger,
  );
}
