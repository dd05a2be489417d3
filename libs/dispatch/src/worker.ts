import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Span } from '@opentelemetry/api';
import type { JsMsg } from '@nats-io/jetstream';
import { backoffMs, describe, InFlight, isDeliveryError, retryable, STOP_FORCE_MS, within, type DeliveryError } from '@relay/core';
import { EnvelopeSchema, MessageState, type Envelope } from '@relay/proto';
import { relayInstruments } from '@relay/telemetry';
import {
  boundDetail,
  decodeEnvelope,
  deleteBody,
  fail,
  isSettled,
  keepFailed,
  processMessage,
  refuseUnsigned,
  unpackEnvelope,
  workDurable,
  type Bus,
  type ConsumeLoop,
  type EnvelopeKeys,
} from '@relay/bus';

export interface RetryPolicy {
  retryInitialMs: number;
  retryMaxMs: number;
  /** After this long since the later of its send_at and its first attempt, a message that still fails is FAILED. */
  maxAgeMs: number;
}

export interface DispatchWorkerOptions {
  bus: Bus;
  transport: 'smtp' | 'graph';
  /** Service name recorded on status events. */
  service: string;
  concurrency: number;
  ackWaitMs: number;
  /** The pause after a pull that found less than a full batch (batchPull); default 25 ms. */
  pullLingerMs?: number;
  retry: RetryPolicy;
  /** The envelope signature's keys: a message ingest did not sign is refused, never sent. */
  envelopeKeys?: EnvelopeKeys;
  /**
   * Delivers one message; resolves with the provider's reply, throws DeliveryError otherwise.
   * `stopping` is aborted when the service stops: a delivery still waiting to start (for a
   * mailbox slot, say) may then throw `notStarted(...)` and its message is handed back.
   */
  deliver: (env: Envelope, stopping: AbortSignal) => Promise<string>;
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

export interface DispatchWorker {
  start(): Promise<void>;
  /**
   * Stops pulling and lets deliveries in flight finish for `graceMs`; then gives what is left
   * `forceMs` more and returns, leaving unfinished messages unacked for redelivery.
   */
  stop(graceMs: number, forceMs?: number): Promise<void>;
  readonly inFlight: number;
}

/**
 * The loop every sender service runs: pull dispatched messages from the transport's durable
 * consumer (replicas share it), deliver each, and settle it as SENT, RETRYING or FAILED before
 * acking. A sent-marker written before the ack, and looked up before every send, makes a message
 * handed out again a no-op.
 */
export function createDispatchWorker(o: DispatchWorkerOptions): DispatchWorker {
  const { bus } = o;
  const inFlight = new InFlight();
  let loop: ConsumeLoop | undefined;
  const durable = bus.names.senderConsumer(o.transport);

  // One timer tells the broker about every message still in the works, rather than one per message.
  const working = new Set<JsMsg>();
  let heartbeat: ReturnType<typeof setInterval> | undefined;

  const metrics = relayInstruments();
  const stopping = new AbortController();
  // Aborted once the grace period is over: a sent-marker still not stored is then given up.
  const forced = new AbortController();

  async function handle(m: JsMsg) {
    try {
      const stub = decodeEnvelope(m.data);
      // One CONSUMER span per delivery attempt, continuing the message's trace from its headers.
      await processMessage(m, { consumer: durable, messageId: stub.messageId, sender: stub.sender }, (span) => settle(m, stub, span));
    } finally {
      working.delete(m);
    }
  }

  async function settle(m: JsMsg, stub: Envelope, span: Span) {
    const id = stub.messageId;
    span.setAttribute('relay.attempt', stub.attempt);
    // The SENT (or FAILED) event is the marker, looked up before every send (one direct get): a
    // redelivery after a crash, a message another replica took meanwhile, or a dispatch the broker
    // hands out again after a restart finds it and does nothing twice.
    const lastEvent = await bus.lastStatus(id);
    if (lastEvent && isSettled(lastEvent)) {
      o.log.info({ message_id: id, state: MessageState[lastEvent.state] }, 'already settled elsewhere or before a restart; not sending again');
      span.setAttribute('relay.outcome', 'already-settled');
      m.ack();
      return;
    }
    // A later attempt exists: this one was retried already (and its retry went on its way).
    if (lastEvent && lastEvent.attempt > stub.attempt) {
      o.log.info({ message_id: id, attempt: stub.attempt, latest_attempt: lastEvent.attempt }, 'attempt superseded by a later one; not sending it');
      span.setAttribute('relay.outcome', 'superseded');
      m.ack();
      return;
    }
    // This attempt already failed and its retry was decided before a crash kept the ack from
    // the broker: the decision stands. The retry is published again (the broker drops it as a
    // duplicate if it got out), and the attempt is not made a second time.
    if (lastEvent?.state === MessageState.RETRYING && lastEvent.attempt === stub.attempt) {
      o.log.info({ message_id: id, attempt: stub.attempt }, 'retry already decided before a restart; not trying this attempt again');
      span.setAttribute('relay.outcome', 'retry-already-decided');
      // A first attempt's dispatch has no first_attempt_at yet; its RETRYING event is as close.
      stub.firstAttemptAt ??= lastEvent.at;
      await publishRetry(stub, backoffMs(stub.attempt, o.retry.retryInitialMs, o.retry.retryMaxMs));
      m.ack();
      return;
    }
    const env = await unpackEnvelope(bus, stub);
    if (await refuseUnsigned(o.envelopeKeys, env, { bus, service: o.service, log: o.log, known: lastEvent !== undefined })) return m.ack();
    // delivery.max_age counts from here (or send_at, if later); retries carry it (stubOf).
    env.firstAttemptAt ??= timestampFromDate(new Date());
    bus.noteStatus({ messageId: id, sender: env.sender, state: MessageState.SENDING, attempt: env.attempt, detail: '', service: o.service });
    let reply: string | undefined;
    let failure: DeliveryError | undefined;
    const started = performance.now();
    try {
      reply = await o.deliver(env, stopping.signal);
    } catch (err) {
      failure = isDeliveryError(err) ? err : retryable(describe(err), { cause: err });
    }
    if (failure?.notStarted) {
      // Nothing reached the provider: no outcome, no attempt counted. Back to the stream at once,
      // for another replica (or this one after its restart).
      span.setAttribute('relay.outcome', 'handed-back');
      o.log.info({ message_id: id, sender: env.sender, attempt: env.attempt, reason: failure.message }, 'not started before shutdown; handed back');
      m.nak();
      return;
    }
    const outcome = reply !== undefined ? 'sent' : failure!.retryable ? 'retryable' : 'permanent';
    metrics.sendDuration.record((performance.now() - started) / 1000, { transport: o.transport, outcome });
    if (reply !== undefined) {
      span.setAttributes({ 'relay.outcome': 'sent', 'relay.provider.reply': reply });
      if (!(await recordSent(env, reply))) {
        // Unacked, not naked: redelivered only after the ack wait, when this process is gone.
        o.log.warn({ message_id: id, sender: env.sender, attempt: env.attempt }, 'stopped before the sent message could be recorded; it may be sent again');
        return;
      }
      await deleteBody(bus, env);
      metrics.sent.add(1, { sender: env.sender, transport: o.transport });
      o.log.debug({ message_id: id, sender: env.sender, attempt: env.attempt }, 'sent');
    } else {
      fail(span, failure);
      span.setAttribute('relay.provider.reply', failure!.message);
      await settleFailure(env, failure!, span);
    }
    m.ack();
  }

  /**
   * Writes the sent-marker. The provider has taken the message, so a failed write must never lead
   * to a second send: it is tried again (the message stays unacked, its ack wait extended, and a
   * short detail in case the full one was the trouble) until it is stored, or the stop's grace
   * period is over (false). Its Nats-Msg-Id stores a write repeated after a lost ack once.
   */
  async function recordSent(env: Envelope, reply: string): Promise<boolean> {
    const ev = {
      messageId: env.messageId,
      sender: env.sender,
      client: env.client,
      state: MessageState.SENT,
      attempt: env.attempt,
      detail: reply,
      service: o.service,
    };
    for (let n = 0; ; n++) {
      try {
        await bus.publishStatus(n === 0 ? ev : { ...ev, detail: boundDetail(reply, SHORT_DETAIL_BYTES) }, undefined, `${env.messageId}.${env.attempt}.sent`);
        return true;
      } catch (err) {
        if (forced.signal.aborted) return false;
        o.log.warn({ message_id: env.messageId, err: describe(err), tries: n + 1 }, 'could not record a sent message; trying again (it is not sent again)');
        await sleep(Math.min(200 * 2 ** n, 5_000), undefined, { signal: forced.signal }).catch(() => {});
        if (forced.signal.aborted) return false;
      }
    }
  }

  async function settleFailure(env: Envelope, err: DeliveryError, span: Span) {
    const detail = err.remedy ? `${err.message} — ${err.remedy}` : err.message;
    const wait = Math.max(backoffMs(env.attempt, o.retry.retryInitialMs, o.retry.retryMaxMs), err.retryAfterMs ?? 0);
    // Each outcome names the client too, so GetMessage can tell whose message it is even without the QUEUED event.
    // The remedy goes separately too, so a timeline can show the provider's reply and the fix apart.
    const base = { messageId: env.messageId, sender: env.sender, client: env.client, attempt: env.attempt, service: o.service, remedy: err.remedy ?? '' };
    if (err.retryable && Date.now() + wait - ageFrom(env) <= o.retry.maxAgeMs) {
      span.setAttributes({ 'relay.outcome': 'retrying', 'relay.retry_in_ms': wait });
      await bus.publishStatus({ ...base, state: MessageState.RETRYING, detail });
      await publishRetry(env, wait);
      metrics.retrying.add(1, { sender: env.sender, transport: o.transport });
      o.log.info({ message_id: env.messageId, sender: env.sender, attempt: env.attempt, retry_in_ms: wait, error: err.message }, 'retrying');
    } else {
      const reason = err.retryable ? `gave up after ${env.attempt} attempts: ${detail}` : detail;
      span.setAttribute('relay.outcome', 'failed');
      // Kept for RetryMessages (delivery.failed_retention) before the outcome is recorded.
      await keepFailed(bus, env, o.log);
      await bus.publishStatus({ ...base, state: MessageState.FAILED, detail: reason });
      metrics.failed.add(1, { sender: env.sender, transport: o.transport });
      o.log.warn({ message_id: env.messageId, sender: env.sender, attempt: env.attempt, error: reason }, 'failed');
    }
  }

  /**
   * The next attempt, back through the scheduler so a retry takes a pacing slot like any other send;
   * published within the attempt's span, it continues the message's trace. Its Nats-Msg-Id is the
   * attempt's, so publishing it twice (after a restart) stores it once.
   */
  async function publishRetry(env: Envelope, wait: number) {
    const next = create(EnvelopeSchema, { ...stubOf(env), attempt: env.attempt + 1, notBefore: timestampFromDate(new Date(Date.now() + wait)) });
    await bus.publishEnvelope(bus.names.submittedSubject(env.sender), next, `${env.messageId}.${next.attempt}.submit`);
  }

  function each(m: JsMsg) {
    working.add(m);
    return handle(m).catch((err: unknown) => {
      // The broker did not take the outcome; the message comes back and is settled again.
      o.log.warn({ err: describe(err), seq: m.seq }, 'could not settle message; it will be redelivered');
      try {
        m.nak(2_000);
      } catch {
        // The connection is gone (shutdown after the grace period): the ack wait redelivers it.
      }
    });
  }

  return {
    get inFlight() {
      return inFlight.size;
    },
    async start() {
      loop = await workDurable(
        bus,
        {
          stream: bus.names.dispatchStream,
          durable,
          filterSubject: bus.names.dispatchWildcard(o.transport),
          ackWaitMs: o.ackWaitMs,
          maxAckPending: Math.max(1_000, o.concurrency * 4),
          concurrency: o.concurrency,
          inFlight,
          lingerMs: o.pullLingerMs,
        },
        each,
        o.log,
      );
      heartbeat = setInterval(() => {
        for (const m of working) m.working();
      }, o.ackWaitMs / 3).unref();
    },
    async stop(graceMs, forceMs = STOP_FORCE_MS) {
      // Stop pulling; what is in flight finishes (or is redelivered to another replica later), and
      // a delivery still waiting to start is handed back.
      loop?.stop();
      stopping.abort();
      if (!(await within(inFlight.idle(), graceMs))) {
        o.log.warn({ in_flight: inFlight.size }, 'grace period over; unfinished messages will be redelivered');
        forced.abort();
      }
      // A pull waiting on a broker that is gone must not hold the stop (see STOP_FORCE_MS).
      if (loop && !(await within(loop.done, forceMs))) o.log.warn({}, 'consumer did not stop in time; leaving it');
      clearInterval(heartbeat);
    },
  };
}

/** A refused-write fallback detail for a sent-marker: small enough for any broker. */
const SHORT_DETAIL_BYTES = 512;

/** When delivery.max_age starts for a message: the later of its send_at and its first attempt. */
export function ageFrom(env: Envelope): number {
  const first = env.firstAttemptAt ? timestampDate(env.firstAttemptAt).getTime() : Date.now();
  return Math.max(first, env.sendAt ? timestampDate(env.sendAt).getTime() : 0);
}

/** The routing fields of an envelope plus its body (or body reference), for a retry. */
function stubOf(env: Envelope): Envelope {
  return env.bodyRef
    ? create(EnvelopeSchema, {
        messageId: env.messageId,
        sender: env.sender,
        client: env.client,
        sendAt: env.sendAt,
        submittedAt: env.submittedAt,
        firstAttemptAt: env.firstAttemptAt,
        recipientCount: env.recipientCount,
        sizeBytes: env.sizeBytes,
        bodyRef: env.bodyRef,
        ingestSig: env.ingestSig,
      })
    : env;
}
