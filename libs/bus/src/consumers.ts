import { nanos } from '@nats-io/nats-core';
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type ConsumerConfig, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { InFlight } from '@relay/core';
import { BATCH_PULL_DEFAULTS, batchPull } from './nats-internals.js';
import type { Bus } from './bus.js';
import { consumeLoop, type ConsumeLoop } from './consume-loop.js';

export interface DurableOptions {
  stream: string;
  durable: string;
  filterSubject: string;
  ackWaitMs: number;
  maxAckPending: number;
}

/** Creates a durable pull consumer, or brings the settings of an existing one up to date. */
export async function ensureDurable(jsm: JetStreamManager, o: DurableOptions): Promise<void> {
  const cfg: Partial<ConsumerConfig> = {
    durable_name: o.durable,
    filter_subject: o.filterSubject,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(o.ackWaitMs),
    max_ack_pending: o.maxAckPending,
    max_deliver: -1,
  };
  try {
    const info = await jsm.consumers.info(o.stream, o.durable);
    if (info.config.ack_wait !== cfg.ack_wait || info.config.max_ack_pending !== cfg.max_ack_pending) {
      await jsm.consumers.update(o.stream, o.durable, { ack_wait: cfg.ack_wait!, max_ack_pending: cfg.max_ack_pending! });
    }
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.ConsumerNotFound) throw err;
  }
  try {
    await jsm.consumers.add(o.stream, cfg);
  } catch (err) {
    // A replica starting at the same moment created it first.
    await jsm.consumers.info(o.stream, o.durable).catch(() => {
      throw err;
    });
  }
}

export interface DurableWorkOptions extends DurableOptions {
  /** Messages handled at once. */
  concurrency: number;
  /** Where the messages being handled are counted (a stop waits on its idle()). */
  inFlight: InFlight;
  /** The pause after a pull that found less than a full batch (batchPull). */
  lingerMs?: number;
}

/**
 * Works through a durable consumer, `concurrency` messages at a time: makes (or updates) the
 * consumer, pulls in batches that ask for no more than there are free slots, so that no message
 * waits in a buffer here while its ack wait runs, and runs `handle` (which must not throw) for
 * each. If the consumer's iterator ends or fails (consumer deleted, broker restarted) it is made
 * and opened again, so the service never sits idle while messages wait.
 */
export async function workDurable(
  bus: Bus,
  o: DurableWorkOptions,
  handle: (m: JsMsg) => Promise<void>,
  log: { warn(obj: object, msg: string): void },
): Promise<ConsumeLoop> {
  const ensure = () => ensureDurable(bus.jsm, o);
  await ensure();
  let reopening = false;
  return consumeLoop(
    async () => {
      if (reopening) await ensure();
      reopening = true;
      const room = () => o.concurrency - o.inFlight.size;
      return batchPull(bus.nc, o.stream, o.durable, { batch: o.concurrency, room, lingerMs: o.lingerMs ?? BATCH_PULL_DEFAULTS.lingerMs });
    },
    async (m) => void o.inFlight.run(() => handle(m)),
    log,
  );
}
