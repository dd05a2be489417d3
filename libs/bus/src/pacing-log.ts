import { nanos } from '@nats-io/nats-core';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import type { Bus } from './bus.js';

/** One grant as recorded in the durable pacing log. */
export interface Grant {
  /** Grant time on Redis' clock (ms). */
  t: number;
  /** Message id and attempt. */
  m: string;
  /** Recipients counted. */
  r: number;
}

/**
 * The pacing log keeps every grant in JetStream for a day, so Redis' pacing state can be rebuilt
 * after Redis lost it: Redis stays a cache of what the log says.
 */
export class PacingLog {
  readonly #bus: Bus;
  constructor(bus: Bus) {
    this.#bus = bus;
  }

  /**
   * Records a grant without waiting for JetStream's ack: the dispatch the scheduler publishes
   * next, on the same connection, is acked only after the server handled this entry first.
   */
  append(sender: string, g: Grant): void {
    this.#bus.nc.publish(this.#bus.names.pacingSubject(sender), JSON.stringify(g));
  }

  /** Every grant of `sender` since `sinceMs`, oldest first. */
  async read(sender: string, sinceMs: number): Promise<Grant[]> {
    const { jsm, js, names } = this.#bus;
    // A plain ephemeral consumer with one filter subject: works on NATS 2.9.
    const info = await jsm.consumers.add(names.pacingStream, {
      filter_subject: names.pacingSubject(sender),
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: new Date(sinceMs).toISOString(),
      inactive_threshold: nanos(30_000),
      mem_storage: true,
    });
    const grants: Grant[] = [];
    try {
      let left = info.num_pending;
      const consumer = await js.consumers.get(names.pacingStream, info.name);
      while (left > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(left, 1_000), expires: 2_000 });
        let got = 0;
        for await (const m of batch) {
          grants.push(m.json<Grant>());
          got++;
        }
        if (got === 0) break;
        left -= got;
      }
    } finally {
      await jsm.consumers.delete(names.pacingStream, info.name).catch(() => {});
    }
    return grants;
  }
}

/**
 * The Redis keys of one pacing key's state (a sender id, or the mailbox several senders share):
 * grants in the interval window, grants in the daily window ("id:attempt|recipients"), the daily
 * totals, and the epoch (present once the state is known, i.e. rebuilt from the pacing log).
 * The scheduler writes them; GetQueueStats only reads them.
 */
export function pacingRedisKeys(prefix: string, pacingKey: string) {
  const base = `${prefix}:pace:{${pacingKey}}`;
  return { win: `${base}:win`, day: `${base}:day`, totals: `${base}:totals`, epoch: `${base}:epoch`, lock: `${base}:rebuild` };
}
