import { setTimeout as sleep } from 'node:timers/promises';
import { fromBinary } from '@bufbuild/protobuf';
import { nanos } from '@nats-io/nats-core';
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type JsMsg } from '@nats-io/jetstream';
import { BATCH_PULL_DEFAULTS, batchPull, consumeLoop, readIndexRecord, type Bus, type ConsumeLoop } from '@relay/bus';
import { backoffMs, describe, InFlight, within } from '@relay/core';
import { StatusEventSchema, type StatusEvent } from '@relay/proto';
import type { Logger } from '@relay/telemetry';
import type { Endpoint } from './endpoint.js';
import { STATE_EVENTS, webhookJob } from './events.js';

export interface FanOutOptions {
  /** Status events handled at once (a message's own events always one after another). */
  concurrency: number;
  ackWaitMs: number;
  /** Message ids whose client is remembered. */
  clientCacheSize: number;
}

export const FANOUT_DEFAULTS: FanOutOptions = { concurrency: 32, ackWaitMs: 30_000, clientCacheSize: 10_000 };

export interface FanOut {
  stop(graceMs: number): Promise<void>;
}

/**
 * Turns state changes into webhook events: one durable on the status stream, shared by the ingest
 * replicas, made at the first start with webhooks so that it begins with the changes from then on
 * (not the stream's whole history). For each change of a message whose client has a webhook
 * wanting it, the event is stored on the webhooks stream under that endpoint (JetStream dedupe
 * on endpoint and status sequence: a change seen twice is stored once) before the change is
 * acked. A message's changes are handled one after another, so they are stored in their order.
 */
export async function startFanOut(
  bus: Bus,
  endpoints: () => ReadonlyMap<string, Endpoint>,
  logger: Logger,
  options: Partial<FanOutOptions> = {},
): Promise<FanOut> {
  const opts = { ...FANOUT_DEFAULTS, ...options };
  const { statusStream: stream, statusWildcard, webhooksFanoutConsumer: durable } = bus.names;
  const inFlight = new InFlight();
  const clients = new Map<string, string>();
  /** The last handling of each message with one in progress: the next of its changes waits for it. */
  const chains = new Map<string, Promise<void>>();
  let stopped = false;

  const remember = (id: string, client: string) => {
    clients.delete(id);
    clients.set(id, client);
    if (clients.size > opts.clientCacheSize) clients.delete(clients.keys().next().value!);
  };

  /** The client of a message: from its first status event (QUEUED at accept names it), else the index. */
  async function clientOf(id: string): Promise<string> {
    const known = clients.get(id);
    if (known !== undefined) return known;
    let client = '';
    try {
      const first = await bus.jsm.direct.getMessage(stream, { seq: 1, next_by_subj: bus.names.statusSubject(id) });
      if (first) client = fromBinary(StatusEventSchema, first.data).client;
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.NoMessageFound) throw err;
    }
    if (!client) client = (await readIndexRecord(bus, id))?.client ?? '';
    if (client) remember(id, client);
    return client;
  }

  async function fanOut(ev: StatusEvent, m: JsMsg) {
    const name = STATE_EVENTS.get(ev.state);
    const all = endpoints();
    if (!name || all.size === 0) return;
    const client = ev.client || (await clientOf(ev.messageId));
    const targets = [...all.values()].filter((e) => e.client === client && e.events.includes(name));
    if (targets.length === 0) return;
    const job = webhookJob(ev, client, m.seq);
    if (!job) return;
    const data = new TextEncoder().encode(JSON.stringify(job));
    for (const e of targets) {
      await bus.js.publish(bus.names.webhookSubject(e.key, ev.messageId), data, { msgID: `${e.key}:${m.seq}` });
    }
  }

  /** Handles one change until it is stored (retrying in place, so the message's next change stays behind it). */
  async function handle(m: JsMsg) {
    let ev: StatusEvent;
    try {
      ev = fromBinary(StatusEventSchema, m.data);
    } catch {
      m.term();
      return;
    }
    if (ev.client) remember(ev.messageId, ev.client);
    for (let attempt = 1; ; attempt++) {
      try {
        await fanOut(ev, m);
        m.ack();
        return;
      } catch (err) {
        if (stopped) return; // left unacked: the ack wait gives it to another replica
        if (attempt === 1) logger.warn({ err: describe(err), message_id: ev.messageId }, 'could not store a webhook event; will try again');
        m.working();
        await sleep(backoffMs(attempt, 200, 5_000));
      }
    }
  }

  function enqueue(m: JsMsg): Promise<void> {
    let id: string;
    try {
      id = fromBinary(StatusEventSchema, m.data).messageId;
    } catch {
      id = '';
    }
    const prev = chains.get(id) ?? Promise.resolve();
    const next = prev.then(() => handle(m));
    chains.set(id, next);
    void next.finally(() => {
      if (chains.get(id) === next) chains.delete(id);
    });
    return next;
  }

  async function ensure() {
    try {
      await bus.jsm.consumers.info(stream, durable);
      return;
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.ConsumerNotFound) throw err;
    }
    await bus.jsm.consumers
      .add(stream, {
        durable_name: durable,
        filter_subject: statusWildcard,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.New,
        ack_wait: nanos(opts.ackWaitMs),
        max_ack_pending: opts.concurrency * 8,
        max_deliver: -1,
      })
      .catch(async (e: unknown) => {
        // Another replica made it at the same moment.
        await bus.jsm.consumers.info(stream, durable).catch(() => {
          throw e;
        });
      });
  }

  await ensure();
  let reopening = false;
  const loop: ConsumeLoop = consumeLoop(
    async () => {
      // Gone while running (deleted by an operator, the broker's state lost): made again.
      if (reopening) await ensure();
      reopening = true;
      return batchPull(bus.nc, stream, durable, {
        batch: opts.concurrency,
        room: () => opts.concurrency - inFlight.size,
        lingerMs: BATCH_PULL_DEFAULTS.lingerMs,
      });
    },
    async (m) => void inFlight.run(() => enqueue(m)),
    logger,
  );

  return {
    async stop(graceMs) {
      stopped = true;
      loop.stop();
      await within(inFlight.idle(), graceMs);
      await loop.done.catch(() => {});
    },
  };
}

/** Removes the fan-out durable: with no webhooks configured, a later start begins from its own time. */
export async function dropFanOut(bus: Bus): Promise<void> {
  await bus.jsm.consumers.delete(bus.names.statusStream, bus.names.webhooksFanoutConsumer).catch(() => {});
}
