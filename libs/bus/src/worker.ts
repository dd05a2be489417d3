import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Span } from '@opentelemetry/api';
import type { JsMsg } from '@nats-io/jetstream';
import { backoffMs, describe, InFlight, isDeliveryError, retryable, within, type DeliveryError } from '@relay/core';
import { EnvelopeSchema, MessageState, type Envelope } from '@relay/proto';
import { relayInstruments } from '@relay/telemetry';
import type { Bus } from './bus.js';
import { decodeEnvelope } from './bus.js';
import { deleteBody, unpackEnvelope } from './bodies.js';
import { consumeLoop, type ConsumeLoop } from './consume-loop.js';
import { BATCH_PULL_DEFAULTS, batchPull } from './batch-pull.js';
import { ensureDurable } from './consumers.js';
import { fail, processMessage } from './trace.js';
import { refuseUnsigned, type EnvelopeKeys } from './envelope-sig.js';

export interface RetryPolicy {
  retryInitialMs: number;
  retryMaxMs: number;
  /** After this long since submission a message that still fails is FAILED. */
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
  stop(graceMs: number): Promise<void>;
  readonly inFlight: number;
}

/**
 * The loop every sender service runs: pull dispatched messages from the transport's durable
 * consumer (replicas share it), deliver each, and settle it as SENT, RETRYING or FAILED before
 * acking. A sent-marker written before the ack makes a redelivered message a no-op.
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

  async function handle(m: JsMsg, mayBeStale: boolean) {
    try {
      const stub = decodeEnvelope(m.data);
      // One CONSUMER span per delivery attempt, continuing the message's trace from its headers.
      await processMessage(m, { consumer: durable, messageId: stub.messageId, sender: stub.sender }, (span) => settle(m, stub, span, mayBeStale));
    } finally {
      working.delete(m);
    }
  }

  /**
   * `mayBeStale`: the broker may have handed this message to someone else meanwhile (it is a
   * redelivery, or it waited in this client's buffer while every slot was busy, where no ack
   * extension reaches it), so what became of it is looked up before anything is sent.
   */
  async function settle(m: JsMsg, stub: Envelope, span: Span, mayBeStale: boolean) {
    const id = stub.messageId;
    span.setAttribute('relay.attempt', stub.attempt);
    // The SENT (or FAILED) event is the marker: written before the ack, so a redelivery after a
    // crash between the outcome and our ack finds it and does nothing twice.
    if (mayBeStale) {
      const lastEvent = await bus.lastStatus(id);
      const last = lastEvent?.state;
      if (last === MessageState.SENT || last === MessageState.FAILED) {
        o.log.info({ message_id: id, state: MessageState[last] }, 'already settled elsewhere or before a restart; not sending again');
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
      if (last === MessageState.RETRYING && lastEvent?.attempt === stub.attempt) {
        o.log.info({ message_id: id, attempt: stub.attempt }, 'retry already decided before a restart; not trying this attempt again');
        span.setAttribute('relay.outcome', 'retry-already-decided');
        await publishRetry(stub, backoffMs(stub.attempt, o.retry.retryInitialMs, o.retry.retryMaxMs));
        m.ack();
        return;
      }
    }
    const env = await unpackEnvelope(bus, stub);
    if (await refuseUnsigned(o.envelopeKeys, env, { bus, service: o.service, log: o.log })) return m.ack();
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
      await bus.publishStatus({ messageId: id, sender: env.sender, state: MessageState.SENT, attempt: env.attempt, detail: reply, service: o.service });
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

  async function settleFailure(env: Envelope, err: DeliveryError, span: Span) {
    const detail = err.remedy ? `${err.message} — ${err.remedy}` : err.message;
    const submitted = env.submittedAt ? timestampDate(env.submittedAt).getTime() : Date.now();
    const wait = Math.max(backoffMs(env.attempt, o.retry.retryInitialMs, o.retry.retryMaxMs), err.retryAfterMs ?? 0);
    const base = { messageId: env.messageId, sender: env.sender, attempt: env.attempt, service: o.service };
    if (err.retryable && Date.now() + wait - submitted <= o.retry.maxAgeMs) {
      span.setAttributes({ 'relay.outcome': 'retrying', 'relay.retry_in_ms': wait });
      await bus.publishStatus({ ...base, state: MessageState.RETRYING, detail });
      await publishRetry(env, wait);
      metrics.retrying.add(1, { sender: env.sender, transport: o.transport });
      o.log.info({ message_id: env.messageId, sender: env.sender, attempt: env.attempt, retry_in_ms: wait, error: err.message }, 'retrying');
    } else {
      const reason = err.retryable ? `gave up after ${env.attempt} attempts: ${detail}` : detail;
      span.setAttribute('relay.outcome', 'failed');
      await bus.publishStatus({ ...base, state: MessageState.FAILED, detail: reason });
      await deleteBody(bus, env);
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

  const waiting: Array<() => void> = [];
  // Pulls ask for no more messages than there are free slots (batchPull), so a pulled message
  // finds one; kept as a safeguard: a message that waits here has no ack extension, and one that
  // waited for most of the ack wait may have gone to another replica. A
  // message can only have waited since the current run of waits for a slot began (the buffer is
  // drained at once otherwise), so only a long run makes its messages suspect: the one that ended
  // it and a buffer's worth after it (at most twice `concurrency`). A run ends
  // only after that many messages in a row found a free slot, so a slot freed now and then does
  // not end it while the buffer still holds old messages. Short runs (a burst) cost no lookups.
  let blockedSince: number | undefined;
  let freeInARow = 0;
  let suspectLeft = 0;
  const suspectAfterMs = o.ackWaitMs / 2;
  async function each(m: JsMsg) {
    working.add(m);
    let suspect = suspectLeft > 0;
    if (suspect) suspectLeft--;
    if (inFlight.size >= o.concurrency) {
      freeInARow = 0;
      blockedSince ??= Date.now();
      await new Promise<void>((r) => waiting.push(r));
      if (Date.now() - blockedSince > suspectAfterMs) {
        suspect = true;
        suspectLeft = 2 * o.concurrency;
      }
    } else if (++freeInARow >= 2 * o.concurrency) {
      blockedSince = undefined;
    }
    const mayBeStale = m.redelivered || suspect;
    void inFlight
      .run(() =>
        handle(m, mayBeStale).catch((err: unknown) => {
          // The broker did not take the outcome; the message comes back and is settled again.
          o.log.warn({ err: describe(err), seq: m.seq }, 'could not settle message; it will be redelivered');
          try {
            m.nak(2_000);
          } catch {
            // The connection is gone (shutdown after the grace period): the ack wait redelivers it.
          }
        }),
      )
      .finally(() => waiting.shift()?.());
  }

  return {
    get inFlight() {
      return inFlight.size;
    },
    async start() {
      const ensure = () =>
        ensureDurable(bus.jsm, {
          stream: bus.names.dispatchStream,
          durable,
          filterSubject: bus.names.dispatchWildcard(o.transport),
          ackWaitMs: o.ackWaitMs,
          maxAckPending: Math.max(1_000, o.concurrency * 4),
        });
      await ensure();
      // Reopened if its iterator ends or fails (consumer deleted, broker restarted), so the
      // service never sits idle while mail waits; a deleted consumer is made again.
      let reopening = false;
      loop = consumeLoop(
        async () => {
          if (reopening) await ensure();
          reopening = true;
          // In batches (see batchPull), never more than there are free slots for.
          return batchPull(bus.nc, bus.names.dispatchStream, durable, { batch: o.concurrency, room: () => o.concurrency - inFlight.size, lingerMs: o.pullLingerMs ?? BATCH_PULL_DEFAULTS.lingerMs });
        },
        each,
        o.log,
      );
      heartbeat = setInterval(() => {
        for (const m of working) m.working();
      }, o.ackWaitMs / 3).unref();
    },
    async stop(graceMs) {
      // Stop pulling; what is in flight finishes (or is redelivered to another replica later), and
      // a delivery still waiting to start is handed back.
      loop?.stop();
      stopping.abort();
      if (!(await within(inFlight.idle(), graceMs))) o.log.warn({ in_flight: inFlight.size }, 'grace period over; unfinished messages will be redelivered');
      await loop?.done.catch(() => {});
      clearInterval(heartbeat);
    },
  };
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
        recipientCount: env.recipientCount,
        sizeBytes: env.sizeBytes,
        bodyRef: env.bodyRef,
        ingestSig: env.ingestSig,
      })
    : env;
}
