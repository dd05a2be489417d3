import { nanos } from '@nats-io/nats-core';
import { DiscardPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { ensureStreams, type Bus } from '@relay/bus';
import type { ClientConfig, WebhookConfig } from '@relay/config';
import { describe } from '@relay/core';
import type { Logger } from '@relay/telemetry';
import { Webhook } from 'standardwebhooks';
import { DELIVERY_LOG_DEPTH, openDeliveryLog, type DeliveryLog, type DeliveryRecord } from './delivery-log.js';
import { startEndpointWorker, type Endpoint, type EndpointTiming, type EndpointWorker } from './endpoint.js';
import { endpointKey, urlForLog } from './events.js';
import { dropFanOut, startFanOut, type FanOut, type FanOutOptions } from './fanout.js';
import { localSign, POST_DEFAULTS, type PostOptions } from './post.js';

export interface WebhooksOptions {
  /** relay.yaml `delivery.webhook_retry_initial` / `webhook_retry_max` / `webhook_max_age`. */
  retryInitialMs: number;
  retryMaxMs: number;
  maxAgeMs: number;
  post?: Partial<PostOptions>;
  /** Per endpoint, across replicas (see EndpointTiming). */
  maxInFlight?: number;
  /** Per endpoint, per replica. */
  concurrency?: number;
  fanOut?: Partial<FanOutOptions>;
}

/** Signs a delivery to a webhook of a client managed through the API: relay-credentials holds its secrets. */
export type RemoteSign = (client: string, url: string, id: string, at: Date, payload: Uint8Array) => Promise<string>;

export const WEBHOOK_PACE_DEFAULTS = { maxInFlight: 8, concurrency: 4 } as const;

/** One endpoint as ListWebhookDeliveries shows it. */
export interface EndpointView {
  url: string;
  events: string[];
  pending: number;
  deliveries: DeliveryRecord[];
  /** Why its events wait instead of being delivered; empty while delivered. */
  held: string;
}

export interface Webhooks {
  /** Makes the stream and the log, and starts delivering for the clients' webhooks. */
  start(clients: readonly ClientConfig[]): Promise<void>;
  /** The configuration changed: endpoints added, changed or removed. */
  apply(clients: readonly ClientConfig[]): Promise<void>;
  /** A client's endpoints with their newest `limit` deliveries. */
  deliveries(client: ClientConfig, limit: number): Promise<EndpointView[]>;
  stop(graceMs: number): Promise<void>;
}

/**
 * Webhooks of clients' messages, run by ingest: a fan-out from the status stream onto a work
 * queue per endpoint, and a delivery worker per endpoint (see fanout.ts and endpoint.ts).
 */
export function createWebhooks(bus: Bus, logger: Logger, opts: WebhooksOptions, remoteSign?: RemoteSign): Webhooks {
  const timing: EndpointTiming = {
    retryInitialMs: opts.retryInitialMs,
    retryMaxMs: opts.retryMaxMs,
    post: { ...POST_DEFAULTS, ...opts.post },
    maxInFlight: opts.maxInFlight ?? WEBHOOK_PACE_DEFAULTS.maxInFlight,
    concurrency: opts.concurrency ?? WEBHOOK_PACE_DEFAULTS.concurrency,
  };
  let endpoints = new Map<string, Endpoint>();
  const workers = new Map<string, EndpointWorker>();
  let fanOut: FanOut | undefined;
  let log: DeliveryLog | undefined;
  let stopped = false;
  // Changes are applied one after another: a start or stop of workers never overlaps another.
  let applying: Promise<void> = Promise.resolve();

  /** Endpoints held for want of a signing secret, each logged once until it has one. */
  const heldLogged = new Set<string>();

  function endpointsOf(clients: readonly ClientConfig[]): Map<string, Endpoint> {
    const out = new Map<string, Endpoint>();
    for (const c of clients) {
      for (const w of c.webhooks ?? []) {
        const key = endpointKey(c.name, w.url);
        const base = { key, client: c.name, url: w.url, events: [...w.events] };
        if (c.managedBy === 'api') {
          out.set(key, { ...base, ...managedSigning(c.name, w) });
          continue;
        }
        const signers = signersFor(c.name, w);
        if (!signers) continue;
        out.set(key, { ...base, sign: localSign(signers) });
      }
    }
    return out;
  }

  /** A client managed through the API: relay-credentials signs, once CreateWebhookSecret made a secret; until then its events wait. */
  function managedSigning(client: string, w: WebhookConfig): Pick<Endpoint, 'sign' | 'held'> {
    const encoder = new TextEncoder();
    const sign = async (id: string, at: Date, body: string) => {
      if (!remoteSign) throw new Error('no credentials service to sign with');
      return remoteSign(client, w.url, id, at, encoder.encode(body));
    };
    if (w.secretCreatedAt) return { sign };
    return { sign, held: `no signing secret; run relay webhooks secret ${client} '${w.url}' (CreateWebhookSecret)` };
  }

  function signersFor(client: string, w: WebhookConfig): Webhook[] | undefined {
    try {
      if (!w.secret) throw new Error('webhook has no secret');
      return [w.secret, ...(w.previousSecret ? [w.previousSecret] : [])].map((s) => new Webhook(s.reveal()));
    } catch (err) {
      // The message names the config key, never the value.
      logger.error({ client, url: urlForLog(w.url), err: describe(err) }, 'webhook left out: its secret cannot be used');
      return undefined;
    }
  }

  async function reconcile(clients: readonly ClientConfig[]) {
    if (stopped || !log) return;
    const next = endpointsOf(clients);
    endpoints = next;
    for (const [key, w] of [...workers]) {
      const e = next.get(key);
      if (e && !e.held) {
        w.update(e);
        continue;
      }
      workers.delete(key);
      await w.stop(5_000);
      // Its events stay in the stream (until webhook_max_age): the same URL back delivers them.
    }
    for (const [key, e] of next) {
      if (e.held) {
        // Its events are stored for it (the fan-out sees it) and wait: none is dropped, none goes unsigned.
        if (!heldLogged.has(key)) {
          heldLogged.add(key);
          logger.warn(
            { client: e.client, url: urlForLog(e.url) },
            `webhook has no signing secret; its events wait until one is made: relay webhooks secret ${e.client} <url>`,
          );
        }
        continue;
      }
      if (heldLogged.delete(key)) logger.info({ client: e.client, url: urlForLog(e.url) }, 'webhook has a signing secret; delivering its waiting events');
      if (workers.has(key)) continue;
      try {
        workers.set(key, await startEndpointWorker(bus, e, log, timing, logger));
      } catch (err) {
        logger.error({ client: e.client, url: urlForLog(e.url), err: describe(err) }, 'could not start delivering to a webhook');
      }
    }
    // Once started it keeps running with no endpoint left (acking every change): an endpoint added
    // later gets the changes from then on, not those made while there was none.
    if (next.size > 0 && !fanOut) fanOut = await startFanOut(bus, () => endpoints, logger, opts.fanOut);
  }

  function apply(clients: readonly ClientConfig[]): Promise<void> {
    applying = applying.then(() => reconcile(clients)).catch((err: unknown) => logger.error({ err: describe(err) }, 'could not apply the webhook settings'));
    return applying;
  }

  return {
    async start(clients) {
      const any = clients.some((c) => (c.webhooks?.length ?? 0) > 0);
      if (!any) {
        // Nothing to deliver: nothing is made on the broker, and a later start with webhooks
        // begins with the changes from its own time.
        await dropFanOut(bus);
        return;
      }
      await ensureWebhookStore(bus, opts.maxAgeMs);
      log = await openDeliveryLog(bus);
      await apply(clients);
    },
    async apply(clients) {
      if (!log && clients.some((c) => (c.webhooks?.length ?? 0) > 0)) {
        await ensureWebhookStore(bus, opts.maxAgeMs);
        log = await openDeliveryLog(bus);
      }
      await apply(clients);
    },
    async deliveries(client, limit) {
      const n = Math.min(Math.max(limit, 1), DELIVERY_LOG_DEPTH);
      return Promise.all(
        (client.webhooks ?? []).map(async (w) => {
          const key = endpointKey(client.name, w.url);
          return {
            url: w.url,
            events: [...w.events],
            pending: await pendingOf(bus, key),
            deliveries: log ? await log.recent(key, n) : [],
            held: endpoints.get(key)?.held ?? '',
          };
        }),
      );
    },
    async stop(graceMs) {
      await applying;
      stopped = true;
      await Promise.allSettled([fanOut?.stop(graceMs), ...[...workers.values()].map((w) => w.stop(graceMs))]);
      workers.clear();
      fanOut = undefined;
    },
  };
}

/** The webhooks stream: a work queue, each event kept until delivered or `maxAgeMs` old. */
async function ensureWebhookStore(bus: Bus, maxAgeMs: number) {
  await ensureStreams(bus.jsm, [
    {
      name: bus.names.webhooksStream,
      subjects: [`${bus.names.prefix}.webhook.>`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: bus.topology.replicas,
      max_age: nanos(maxAgeMs),
      discard: DiscardPolicy.Old,
      // A message's next event looks up its earlier ones (ordering per message).
      allow_direct: true,
      duplicate_window: nanos(Math.min(maxAgeMs, 10 * 60_000)),
    },
  ]);
}

/** Events of an endpoint not yet delivered: waiting in the stream, or out and between attempts. */
async function pendingOf(bus: Bus, key: string): Promise<number> {
  const notFound = (err: unknown) =>
    err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound);
  try {
    const info = await bus.jsm.consumers.info(bus.names.webhooksStream, bus.names.webhookConsumer(key));
    return info.num_pending + info.num_ack_pending;
  } catch (err) {
    if (!notFound(err)) throw err;
  }
  // No worker yet (a webhook waiting for its secret): what the stream holds for it.
  try {
    const info = await bus.jsm.streams.info(bus.names.webhooksStream, { subjects_filter: bus.names.webhookWildcard(key) });
    return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  } catch (err) {
    if (notFound(err)) return 0;
    throw err;
  }
}
