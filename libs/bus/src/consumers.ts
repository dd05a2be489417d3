import { nanos } from '@nats-io/nats-core';
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type ConsumerConfig, type JetStreamManager } from '@nats-io/jetstream';

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
