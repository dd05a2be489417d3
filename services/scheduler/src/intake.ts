import type { JsMsg } from '@nats-io/jetstream';
import { batchPull, decodeEnvelope, ensureDurable, isSettled, processMessage, type Bus } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import type { Envelope } from '@relay/proto';
import { describe } from '@relay/core';
import { relayInstruments, type Logger } from '@relay/telemetry';
import { BoundedLoop } from './bounded-loop.js';
import type { Pacer } from './pacer.js';
import { decide } from './route.js';
import { isPaced } from './redis-pacer.js';

export interface IntakeOptions {
  /** Messages the intake works on at once. */
  concurrency: number;
  /** The pause after a pull that found less than a full batch (see batchPull in @relay/bus). */
  pullLingerMs: number;
  ackWaitMs: number;
  /**
   * How often at least acked mail is purged from the submitted stream (limits retention, see
   * topology.ts), and how often the intake looks whether it may purge sooner. Rarer purges drop more
   * whole blocks of the file store at once: NATS 2.9 spent 0.064 ms of CPU per message with a purge
   * every 5 s, 0.075-0.095 every second, 0.136 deleting each message at its ack (work queue), 0.04
   * never.
   */
  compactEveryMs: number;
  compactCheckMs: number;
  /**
   * While mail has been acked at most `compactEarlyPerS` a second since the last purge, a purge
   * that leaves at most `compactTailMessages` in the stream (all unacked) is done at the next look,
   * not after `compactEveryMs`. That keeps the file store's block being written small: on NATS 2.9
   * a block read while it is written keeps a write buffer that grows with it, and while it grows,
   * publishes to the stream wait, and SendMail with them (`npm run bench:broker` shows it). Faster
   * mail keeps the longer interval, since asking the broker for the ack floor at every look costs
   * the intake much of its rate (`npm run bench:scheduler`; see #compact).
   */
  compactTailMessages: number;
  compactEarlyPerS: number;
  /** How long the intake waits for a paced sender's look at Redis before holding the message. */
  pacerWaitMs: number;
}

export const INTAKE_DEFAULTS: IntakeOptions = {
  concurrency: 256,
  pullLingerMs: 25,
  ackWaitMs: 30_000,
  compactEveryMs: 5_000,
  compactCheckMs: 200,
  compactTailMessages: 256,
  compactEarlyPerS: 1_000,
  pacerWaitMs: 250,
};

/**
 * Whether the intake purges now: there is acked mail below the floor not purged yet, and either
 * the last purge is `compactEveryMs` ago, or mail has been acked slowly since and little stays
 * after the purge (`tail`, unacked messages; see IntakeOptions).
 */
export function purgeDue(
  look: { floor: number; purgedBelow: number; tail: number; sinceLastMs: number },
  opts: Pick<IntakeOptions, 'compactEveryMs' | 'compactTailMessages' | 'compactEarlyPerS'>,
): boolean {
  const acked = look.floor - look.purgedBelow;
  if (acked <= 0) return false;
  if (look.sinceLastMs >= opts.compactEveryMs) return true;
  return look.tail <= opts.compactTailMessages && acked * 1000 <= opts.compactEarlyPerS * look.sinceLastMs;
}

export interface IntakeSources {
  /** The sender a message's subject names, from the configuration in force now. */
  sender(id: string): SenderConfig | undefined;
  /** Whether this replica is working on held mail of the sender (new mail then queues behind it). */
  holding(id: string): boolean;
}

/**
 * The scheduler's intake: one durable consumer (`scheduler`, shared by the replicas) on every
 * submitted subject. Each message is looked at once and never waited for here:
 *  - due, and its sender unpaced or paced with room right now (one atomic Redis look, the same
 *    script the lanes use, so limits stay global) -> handed to its transport;
 *  - anything else -> moved to its sender's subject on the held stream (a publish with a
 *    Nats-Msg-Id, then the ack): its send_at or retry time has not come, the pace has no room,
 *    Redis cannot be read, the sender already has mail held here (so new mail does not overtake
 *    it), or the configuration no longer has the sender (its mail waits there until it does).
 * The sender's lane (lane.ts) then waits for it with its own consumer. So no sender's backlog or
 * pace ever stands in front of another sender's mail, and new mail costs JetStream one consumer
 * instead of one per sender: a consumer per sender on the stream new mail arrives on makes NATS 2.9
 * spend several times the CPU per message once there are many senders.
 */
export class Intake {
  readonly #bus: Bus;
  readonly #src: IntakeSources;
  readonly #pacer: Pacer;
  readonly #logger: Logger;
  readonly #opts: IntakeOptions;
  readonly #abort = new AbortController();
  #loop: BoundedLoop | undefined;
  #compactor: NodeJS.Timeout | undefined;
  #purgedBelow = 0;
  #lastPurge = performance.now();
  #lastLook = performance.now();
  /** Messages this replica has acked since its last purge. */
  #ackedSincePurge = 0;
  #earlyNotBefore = 0;
  #compacting = false;

  constructor(bus: Bus, src: IntakeSources, pacer: Pacer, logger: Logger, opts: IntakeOptions = INTAKE_DEFAULTS) {
    this.#bus = bus;
    this.#src = src;
    this.#pacer = pacer;
    this.#logger = logger;
    this.#opts = opts;
  }

  get durable(): string {
    return this.#bus.names.schedulerConsumer;
  }

  async start(): Promise<void> {
    const { names, jsm } = this.#bus;
    const ensure = () =>
      ensureDurable(jsm, {
        stream: names.submittedStream,
        durable: this.durable,
        filterSubject: names.submittedWildcard,
        ackWaitMs: this.#opts.ackWaitMs,
        // Nothing is parked here: what is pending is only what the replicas have in hand.
        maxAckPending: this.#opts.concurrency * 8,
      });
    await ensure();
    this.#compactor = setInterval(() => void this.#compact(), this.#opts.compactCheckMs).unref();
    let reopening = false;
    this.#loop = new BoundedLoop(
      async () => {
        if (reopening) await ensure();
        reopening = true;
        // In batches (see batchPull), never more than there are free slots for.
        return batchPull(this.#bus.nc, names.submittedStream, this.durable, {
          batch: this.#opts.concurrency,
          room: () => this.#opts.concurrency - (this.#loop?.inFlight ?? 0),
          lingerMs: this.#opts.pullLingerMs,
        });
      },
      () => this.#opts.concurrency,
      (m) => this.#handle(m),
      this.#logger,
    );
  }

  /** New mail not yet looked at (in the stream or in the replicas' hands). */
  async pending(): Promise<number> {
    const info = await this.#bus.jsm.consumers.info(this.#bus.names.submittedStream, this.durable);
    return info.num_pending + info.num_ack_pending;
  }

  /**
   * Removes from the stream what every replica has acked: all messages below the consumer's ack
   * floor, in one purge (see topology.ts), when `purgeDue` says so. Any replica may do it; doing it
   * twice is harmless.
   */
  async #compact(): Promise<void> {
    if (this.#compacting) return;
    const now = performance.now();
    const sinceLastMs = now - this.#lastPurge;
    const regular = now - this.#lastLook >= this.#opts.compactEveryMs;
    // Between regular looks the broker is asked only when this replica's own count says an early
    // purge may be due: a consumer's info has NATS count its pending messages, which on a long
    // stream costs more than the purge. After a look that found too much unacked, the next early
    // one waits a second.
    const early =
      now >= this.#earlyNotBefore &&
      this.#ackedSincePurge > 0 &&
      this.#ackedSincePurge * 1000 <= this.#opts.compactEarlyPerS * sinceLastMs &&
      (this.#loop?.inFlight ?? 0) <= this.#opts.compactTailMessages;
    if (!regular && !early) return;
    this.#compacting = true;
    this.#lastLook = now;
    const { names, jsm } = this.#bus;
    try {
      const info = await jsm.consumers.info(names.submittedStream, this.durable);
      const floor = info.ack_floor.stream_seq;
      if (!purgeDue({ floor, purgedBelow: this.#purgedBelow, tail: info.num_pending + info.num_ack_pending, sinceLastMs }, this.#opts)) {
        this.#earlyNotBefore = now + 1_000;
        return;
      }
      await jsm.streams.purge(names.submittedStream, { seq: floor + 1 });
      this.#purgedBelow = floor;
      this.#lastPurge = performance.now();
      this.#ackedSincePurge = 0;
    } catch (err) {
      // Mail is never at risk here; the stream only keeps acked messages a little longer.
      if (!this.#abort.signal.aborted) this.#logger.debug({ err: describe(err) }, 'could not purge acked mail from the submitted stream; will try again');
    } finally {
      this.#compacting = false;
    }
  }

  async #handle(m: JsMsg) {
    const id = m.subject.slice(this.#bus.names.submittedSubject('').length);
    try {
      const env = decodeEnvelope(m.data);
      await processMessage(m, { consumer: this.durable, messageId: env.messageId, sender: id }, async (span) => {
        span.setAttribute('relay.attempt', env.attempt);
        // Handed out again after it was sent (a redelivery, a broker restart that lost its
        // duplicate window): settled mail takes no pacing slot and is not dispatched again.
        if (isSettled(await this.#bus.lastStatus(env.messageId))) {
          span.setAttribute('relay.schedule.decision', 'already-settled');
          m.ack();
          this.#ackedSincePurge++;
          return;
        }
        const r = await this.#route(id, env);
        if ('hold' in r) {
          span.setAttributes({ 'relay.schedule.decision': 'hold', 'relay.schedule.hold_reason': r.hold });
          await this.#bus.publishEnvelope(this.#bus.names.heldSubject(id), env, `${env.messageId}.${env.attempt}.held`, m.headers);
          m.ack();
          this.#ackedSincePurge++;
          return;
        }
        span.setAttributes({ 'relay.schedule.decision': 'dispatch', 'relay.transport': r.dispatch, 'relay.pacing.wait_ms': 0 });
        relayInstruments().pacingWait.record(0, { sender: id });
        await this.#bus.publishEnvelope(this.#bus.names.dispatchSubject(r.dispatch, id), env, `${env.messageId}.${env.attempt}.dispatch`, m.headers);
        m.ack();
        this.#ackedSincePurge++;
      });
    } catch (err) {
      if (!this.#abort.signal.aborted) this.#logger.warn({ err: describe(err), seq: m.seq, sender: id }, 'could not route message; will retry');
      // It stays in the stream and comes back; nothing is dropped.
      try {
        m.nak(this.#abort.signal.aborted ? undefined : 1_000);
      } catch {
        // connection closed
      }
    }
  }

  /** Hand on now (the slot is taken when paced), or hold, and why. */
  async #route(id: string, env: Envelope): Promise<{ dispatch: SenderConfig['transport'] } | { hold: string }> {
    const sender = this.#src.sender(id);
    if (!sender) return { hold: 'unknown sender' };
    const d = decide(env, sender, Date.now());
    if (d.action === 'wait') return { hold: 'not due' };
    if (isPaced(sender.rate)) {
      if (this.#src.holding(id)) return { hold: 'mail held before it' };
      // Redis answering slowly must not slow the intake for every sender: past a short wait the
      // message is held (its lane asks again). A grant that comes later only leaves a slot unused.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), this.#opts.pacerWaitMs)));
      const answer = await Promise.race([this.#pacer.tryAcquire(sender, env), late]).finally(() => clearTimeout(timer));
      if (answer === 'late') return { hold: 'pacing state slow to answer' };
      if (!answer) return { hold: 'pace' };
    }
    return { dispatch: d.transport };
  }

  async stop(graceMs: number): Promise<void> {
    clearInterval(this.#compactor);
    this.#loop?.halt();
    this.#abort.abort();
    await this.#loop?.drain(graceMs);
  }
}
