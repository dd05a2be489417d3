import type { JsMsg } from '@nats-io/jetstream';
import { trace } from '@opentelemetry/api';
import { deadLetter, decodeEnvelope, ensureDurable, isSettled, keepFailed, processMessage, type Bus } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import { describe } from '@relay/core';
import { relayInstruments, type Logger } from '@relay/telemetry';
import { BoundedLoop } from './bounded-loop.js';
import type { Pacer } from './pacer.js';
import { decide } from './route.js';
import { isPaced } from './redis-pacer.js';
import { heldExpiry, SCHEDULER_SERVICE } from './held-expiry.js';
import { MessageState, type Envelope } from '@relay/proto';

export interface LaneOptions {
  /** Messages one lane works on at once (waiting for a slot counts). */
  concurrency: number;
  ackWaitMs: number;
  /** Held mail older than this ends FAILED (limits.held_max_age). */
  heldMaxAgeMs: number;
}

/** Messages a lane with only daily caps holds at once (the rest wait in the stream). */
const PACED_IN_HAND = 16;

export const LANE_DEFAULTS: LaneOptions = { concurrency: 256, ackWaitMs: 30_000, heldMaxAgeMs: 72 * 3_600_000 };

/**
 * One sender's held mail (see intake.ts): its own durable consumer on its own subject of the held
 * stream, so a sender waiting for its pace (or with a huge backlog, or mail parked until its
 * send_at) holds only its own messages and never stands in front of another sender's mail.
 * Replicas share each lane's durable consumer.
 */
export class SenderLane {
  readonly #bus: Bus;
  readonly #pacer: Pacer;
  readonly #logger: Logger;
  readonly #opts: LaneOptions;
  readonly #abort = new AbortController();
  #sender: SenderConfig;
  #loop: BoundedLoop | undefined;

  constructor(bus: Bus, sender: SenderConfig, pacer: Pacer, logger: Logger, opts: LaneOptions = LANE_DEFAULTS) {
    this.#bus = bus;
    this.#sender = sender;
    this.#pacer = pacer;
    this.#logger = logger.child({ sender: sender.id });
    this.#opts = opts;
  }

  get durable(): string {
    return `${this.#bus.names.schedulerConsumer}-${this.#sender.id}`;
  }

  /** A changed configuration for the same sender applies from the next message on. */
  update(sender: SenderConfig) {
    this.#sender = sender;
  }

  async start(): Promise<void> {
    const { names, jsm, js } = this.#bus;
    const ensure = () =>
      ensureDurable(jsm, {
        stream: names.heldStream,
        durable: this.durable,
        filterSubject: names.heldSubject(this.#sender.id),
        ackWaitMs: this.#opts.ackWaitMs,
        // Parked messages (send_at, retry backoff) stay pending; leave them plenty of room.
        maxAckPending: 100_000,
      });
    await ensure();
    let reopening = false;
    this.#loop = new BoundedLoop(
      async () => {
        // A consumer that went away (deleted, broker state lost) is made again on reopening.
        if (reopening) await ensure();
        reopening = true;
        const consumer = await js.consumers.get(names.heldStream, this.durable);
        // A paced sender holds only about one batch: messages buffered in the client get no ack
        // extensions, and the rest of its backlog is better left in the stream.
        return consumer.consume({ max_messages: Math.min(this.#concurrency(), 512), abort_on_missing_resource: true });
      },
      () => this.#concurrency(),
      (m) => this.#handle(m),
      this.#logger,
    );
  }

  #concurrency(): number {
    const rate = this.#sender.rate;
    if (!isPaced(rate)) return this.#opts.concurrency;
    return Math.max(1, Math.min(this.#opts.concurrency, rate.batchSize ?? PACED_IN_HAND));
  }

  get sender(): SenderConfig {
    return this.#sender;
  }

  /** True while this replica works on some of the sender's held mail (new mail queues behind it). */
  get busy(): boolean {
    return (this.#loop?.inFlight ?? 0) > 0;
  }

  /**
   * Messages of this sender the scheduler holds (in the held stream or in hand). Mail just taken
   * in is counted globally by the intake, not per sender: the submitted stream keeps acked mail
   * until its next purge, so its per-subject counts are not a backlog.
   */
  async backlog(): Promise<number> {
    const info = await this.#bus.jsm.consumers.info(this.#bus.names.heldStream, this.durable);
    return info.num_pending + info.num_ack_pending;
  }

  async #handle(m: JsMsg) {
    const sender = this.#sender;
    try {
      const env = decodeEnvelope(m.data);
      // The scheduler's decision is a CONSUMER span in the message's trace: parked (send_at, retry
      // backoff) or dispatched, with the time it waited for its pacing slot.
      await processMessage(m, { consumer: this.durable, messageId: env.messageId, sender: sender.id }, async (span) => {
        span.setAttribute('relay.attempt', env.attempt);
        const d = decide(env, sender, Date.now());
        if (d.action === 'wait') {
          span.setAttributes({ 'relay.schedule.decision': 'wait', 'relay.schedule.wait_ms': d.ms });
          m.nak(d.ms);
          return;
        }
        // Mail settled (sent, or cancelled) meanwhile, or that waited too long for its pace, goes no further.
        if (await this.#settledHere(env)) {
          span.setAttribute('relay.schedule.decision', 'dead-letter');
          m.ack();
          return;
        }
        const keepAlive = () => m.working();
        const timer = setInterval(keepAlive, this.#opts.ackWaitMs / 3);
        const asked = performance.now();
        // A span of its own only where there is pacing to wait for; unpaced mail has the attribute.
        const pace = isPaced(sender.rate) ? trace.getTracer('campus-relay').startSpan('pacing wait', { attributes: { 'relay.sender': sender.id } }) : undefined;
        try {
          await this.#pacer.acquire(() => this.#sender, env, this.#abort.signal, keepAlive);
        } finally {
          clearInterval(timer);
          const waitedMs = performance.now() - asked;
          pace?.setAttribute('relay.pacing.wait_ms', Math.round(waitedMs));
          pace?.end();
          span.setAttribute('relay.pacing.wait_ms', Math.round(waitedMs));
          relayInstruments().pacingWait.record(waitedMs / 1000, { sender: sender.id });
        }
        // A long wait for the pace: cancelled or expired (by the sweeper) meanwhile goes no further.
        if (performance.now() - asked > 1_000 && (await this.#settledHere(env))) {
          span.setAttribute('relay.schedule.decision', 'dead-letter');
          m.ack();
          return;
        }
        span.setAttributes({ 'relay.schedule.decision': 'dispatch', 'relay.transport': d.transport });
        await this.#bus.publishEnvelope(this.#bus.names.dispatchSubject(d.transport, sender.id), env, `${env.messageId}.${env.attempt}.dispatch`, m.headers);
        m.ack();
      });
    } catch (err) {
      if (!this.#abort.signal.aborted) this.#logger.warn({ err: describe(err), seq: m.seq }, 'could not route message; will retry');
      // The message stays in the stream and comes back; nothing is dropped. With the connection
      // already closed (stopping after the grace period) the ack wait brings it back instead.
      try {
        m.nak(this.#abort.signal.aborted ? undefined : 1_000);
      } catch {
        // connection closed
      }
    }
  }

  /**
   * True when the message is settled already (SENT, or FAILED: cancelled, its envelope kept for a
   * retry) or has now waited longer than `limits.held_max_age` (it is made FAILED here).
   */
  async #settledHere(env: Envelope): Promise<boolean> {
    const last = await this.#bus.lastStatus(env.messageId);
    if (isSettled(last)) {
      if (last?.state === MessageState.FAILED) await keepFailed(this.#bus, env, this.#logger);
      return true;
    }
    const reason = heldExpiry(env, Date.now(), this.#opts.heldMaxAgeMs, "waiting for the sender's pace");
    if (!reason) return false;
    await deadLetter(this.#bus, env, reason, SCHEDULER_SERVICE, this.#logger);
    this.#logger.warn({ message_id: env.messageId, reason }, 'held mail expired');
    return true;
  }

  async stop(graceMs: number): Promise<void> {
    this.#loop?.halt();
    this.#abort.abort();
    await this.#loop?.drain(graceMs);
  }
}
