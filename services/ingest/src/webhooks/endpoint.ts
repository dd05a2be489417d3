import { setTimeout as sleep } from 'node:timers/promises';
import { JetStreamApiCodes, JetStreamApiError, type JsMsg } from '@nats-io/jetstream';
import { workDurable, type Bus, type ConsumeLoop } from '@relay/bus';
import { backoffMs, describe, InFlight, within } from '@relay/core';
import type { WebhookEventName } from '@relay/config';
import type { Logger } from '@relay/telemetry';
import type { DeliveryLog } from './delivery-log.js';
import { urlForLog, type WebhookJob } from './events.js';
import { webhookAttempts } from './metrics.js';
import { postEvent, type PostOptions, type WebhookSign } from './post.js';

/** How long an event waits in place for an earlier event of its message before it is given back. */
const EARLIER_WAIT_MS = 3_000;
/** How soon an event given back for an earlier one comes again. */
const WAITING_RECHECK_MS = 1_000;

/** One client's webhook, as the workers use it. */
export interface Endpoint {
  key: string;
  client: string;
  url: string;
  events: readonly WebhookEventName[];
  /** Signs each delivery: with relay.yaml's secrets here, or through relay-credentials for a client managed through the API. */
  sign: WebhookSign;
  /**
   * Set while its events wait in the stream instead of being delivered (no signing secret yet):
   * why, and what to do. No worker runs for it meanwhile.
   */
  held?: string;
}

export interface EndpointTiming {
  retryInitialMs: number;
  retryMaxMs: number;
  post: PostOptions;
  /**
   * Events of one endpoint out for delivery at once, across every ingest replica (the durable's
   * max_ack_pending, events between attempts included): the pace a receiver sees.
   */
  maxInFlight: number;
  /** Of those, how many one replica posts at once. */
  concurrency: number;
}

export interface EndpointWorker {
  /** The settings in force for the next delivery (events, URL's secret). */
  update(e: Endpoint): void;
  stop(graceMs: number): Promise<void>;
}

/**
 * Delivers the events waiting for one endpoint (its subjects on the webhooks stream, a work
 * queue: an event leaves it once delivered). An attempt that fails is given back with a delay
 * (exponential, up to retryMaxMs), so JetStream keeps the event until the receiver takes it, and
 * the events of one message go in the order they happened: an event waits while an earlier one
 * of its message (a lower sequence on the same subject) is still in the stream.
 */
export async function startEndpointWorker(bus: Bus, first: Endpoint, log: DeliveryLog, timing: EndpointTiming, logger: Logger): Promise<EndpointWorker> {
  let endpoint = first;
  const inFlight = new InFlight();
  const { webhooksStream: stream } = bus.names;
  const where = { client: first.client, url: urlForLog(first.url) };
  /** When the current run of failed attempts began; undefined while the endpoint answers. */
  let failingSince: number | undefined;

  async function earlierPending(m: JsMsg): Promise<boolean> {
    try {
      const firstOfMessage = await bus.jsm.direct.getMessage(stream, { seq: 1, next_by_subj: m.subject });
      return firstOfMessage !== null && firstOfMessage.seq < m.seq;
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.NoMessageFound) return false;
      throw err;
    }
  }

  /**
   * Waits a little for an earlier event of the message that is being delivered right now (the
   * usual case: QUEUED, SENDING and SENT come close together); false when one is still pending
   * after that, between its attempts: this event then comes back later.
   */
  async function earlierDone(m: JsMsg): Promise<boolean> {
    let waited = 0;
    for (let pause = 25; ; pause = Math.min(pause * 2, 500)) {
      if (!(await earlierPending(m))) return true;
      if (waited >= EARLIER_WAIT_MS) return false;
      await sleep(pause);
      waited += pause;
    }
  }

  async function deliver(m: JsMsg) {
    let job: WebhookJob;
    try {
      job = m.json<WebhookJob>();
    } catch {
      logger.warn({ ...where, seq: m.seq }, 'not a webhook event; dropped');
      m.term();
      return;
    }
    try {
      if (!(await earlierDone(m))) {
        // Back soon after the earlier event's next attempt, which decides when this one may go.
        m.nak(Math.min(timing.retryInitialMs, WAITING_RECHECK_MS));
        return;
      }
    } catch (err) {
      logger.warn({ ...where, err: describe(err) }, 'could not check the order of webhook events; will try again');
      m.nak(timing.retryInitialMs);
      return;
    }
    // A first delivery is a first attempt; a later one may have been a wait behind an earlier event.
    const before = m.info.deliveryCount === 1 ? 0 : await log.attempts(endpoint.key, job.id).catch(() => m.info.deliveryCount - 1);
    const attempt = before + 1;
    const outcome = await postEvent(endpoint.url, job.id, job.body, endpoint.sign, timing.post);
    await log
      .record(endpoint.key, {
        at: new Date().toISOString(),
        event_id: job.id,
        event_type: job.type,
        message_id: job.message_id,
        attempt,
        status_code: outcome.status,
        error: outcome.error,
        response: outcome.response,
        duration_ms: outcome.durationMs,
      })
      .catch((err: unknown) => logger.warn({ ...where, err: describe(err) }, 'could not write the webhook delivery log'));
    webhookAttempts().add(1, { client: endpoint.client, outcome: outcome.ok ? 'delivered' : 'failed' });
    if (outcome.ok) {
      // Acked (and so gone from the stream) before the message's next event checks for it.
      await m.ackAck().catch(() => {});
      if (before > 0) await log.delivered(endpoint.key, job.id).catch(() => {});
      if (failingSince !== undefined) {
        logger.info({ ...where, failing_ms: Date.now() - failingSince }, 'webhook endpoint takes events again');
        failingSince = undefined;
      }
      return;
    }
    const delay = backoffMs(attempt, timing.retryInitialMs, timing.retryMaxMs);
    // Once per outage, not once per event: a receiver down for an hour would otherwise flood the log.
    if (failingSince === undefined) {
      failingSince = Date.now();
      logger.warn(
        { ...where, event_id: job.id, status: outcome.status, error: outcome.error },
        'webhook endpoint is failing; its events are kept and retried with backoff',
      );
    }
    await log.failed(endpoint.key, job.id, attempt).catch(() => {});
    m.nak(delay);
  }

  const loop: ConsumeLoop = await workDurable(
    bus,
    {
      stream,
      durable: bus.names.webhookConsumer(first.key),
      filterSubject: bus.names.webhookWildcard(first.key),
      // Room for the attempt and its log write.
      ackWaitMs: timing.post.timeoutMs + 20_000,
      maxAckPending: timing.maxInFlight,
      concurrency: timing.concurrency,
      inFlight,
    },
    async (m) => {
      try {
        await deliver(m);
      } catch (err) {
        logger.warn({ ...where, err: describe(err) }, 'webhook delivery failed');
        try {
          m.nak(timing.retryInitialMs);
        } catch {
          // connection closed: the ack wait brings it back
        }
      }
    },
    logger,
  );

  return {
    update(e) {
      endpoint = e;
    },
    async stop(graceMs) {
      loop.stop();
      await within(inFlight.idle(), graceMs);
      await loop.done.catch(() => {});
    },
  };
}
