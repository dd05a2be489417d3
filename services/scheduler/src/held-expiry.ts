import { timestampDate } from '@bufbuild/protobuf/wkt';
import { context } from '@opentelemetry/api';
import { JetStreamApiCodes, JetStreamApiError, type StoredMsg } from '@nats-io/jetstream';
import { deadLetter, decodeEnvelope, extractContext, isSettled, keepFailed, type Bus } from '@relay/bus';
import { describe } from '@relay/core';
import { MessageState, type Envelope } from '@relay/proto';
import type { Logger } from '@relay/telemetry';

export const SCHEDULER_SERVICE = 'relay-scheduler';

/** Young messages in a row after which a sweep leaves a sender's held mail. */
const YOUNG_RUN = 32;

/**
 * Why a held message will not be sent, if its time is up: it has waited `limits.held_max_age`
 * since the latest of its submission, its send_at and its retry time.
 */
export function heldExpiry(env: Envelope, now: number, maxAgeMs: number, why: string): string | undefined {
  const since = Math.max(...[env.submittedAt, env.sendAt, env.notBefore].filter((t) => t !== undefined).map((t) => timestampDate(t).getTime()), 0);
  if (now - since <= maxAgeMs) return undefined;
  return `held longer than limits.held_max_age (${shown(maxAgeMs)}): ${why}`;
}

/** A duration as relay.yaml would write it. */
function shown(ms: number): string {
  for (const [unit, n] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const)
    if (ms % n === 0) return `${ms / n}${unit}`;
  return `${ms}ms`;
}

export interface HeldSweeperOptions {
  bus: Bus;
  /** Whether the configuration in force has the sender (for the reason given). */
  known(sender: string): boolean;
  maxAgeMs: () => number;
  logger: Logger;
  /** Messages looked at per sender per sweep. */
  perSender?: number;
}

export interface HeldSweeper {
  start(): void;
  stop(): Promise<void>;
  /** One pass over the held stream; resolves with the messages that ended FAILED. */
  sweep(): Promise<number>;
}

/**
 * Ends FAILED the held mail that has waited too long: mail of a sender the configuration no longer
 * (or never) had, and a paced sender's backlog, including what its lane holds waiting for a slot
 * (the lane looks at the status again before it hands a message on). Messages are read without
 * consuming them and deleted from the held stream only after their envelope is kept for
 * RetryMessages and their FAILED status is stored. Any replica may sweep; two at once at worst
 * record FAILED twice.
 */
export function createHeldSweeper(o: HeldSweeperOptions): HeldSweeper {
  const { bus } = o;
  const per = o.perSender ?? 1_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let stopped = false;

  async function next(subject: string, seq: number): Promise<StoredMsg | null> {
    try {
      return await bus.jsm.direct.getMessage(bus.names.heldStream, { seq, next_by_subj: subject });
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.NoMessageFound) return null;
      throw err;
    }
  }

  async function sweepSender(sender: string): Promise<number> {
    const subject = bus.names.heldSubject(sender);
    const why = o.known(sender) ? "waiting for the sender's pace" : 'its sender is not configured';
    let seq = 1;
    let failed = 0;
    let youngInARow = 0;
    for (let looked = 0; looked < per && !stopped; looked++) {
      const m = await next(subject, seq);
      if (!m) break;
      seq = m.seq + 1;
      const env = decodeEnvelope(m.data);
      const reason = heldExpiry(env, Date.now(), o.maxAgeMs(), why);
      if (!reason) {
        // Held mail is stored roughly oldest first, so a run of young messages ends the look: an
        // expired one further back is found by a later sweep, once those before it have left.
        if (++youngInARow >= YOUNG_RUN) break;
        continue;
      }
      youngInARow = 0;
      // Settled meanwhile (a lane sent it at the boundary, or it was cancelled, its envelope kept
      // for a retry): not made FAILED again.
      const last = await bus.lastStatus(env.messageId);
      if (!isSettled(last)) {
        await context.with(extractContext(m.header), () => deadLetter(bus, env, reason, SCHEDULER_SERVICE, o.logger));
        o.logger.warn({ message_id: env.messageId, sender, reason }, 'held mail expired');
        failed++;
      } else if (last?.state === MessageState.FAILED) {
        await keepFailed(bus, env, o.logger);
      }
      await bus.jsm.streams.deleteMessage(bus.names.heldStream, m.seq, false).catch(() => false);
    }
    return failed;
  }

  async function sweep(): Promise<number> {
    const prefix = bus.names.heldSubject('');
    const info = await bus.jsm.streams.info(bus.names.heldStream, { subjects_filter: bus.names.heldWildcard });
    let failed = 0;
    for (const subject of Object.keys(info.state.subjects ?? {})) {
      if (stopped) break;
      failed += await sweepSender(subject.slice(prefix.length));
    }
    return failed;
  }

  return {
    sweep,
    start() {
      // Often enough that mail fails within a small part of its allowed time; at most every minute.
      const every = Math.max(250, Math.min(60_000, o.maxAgeMs() / 4));
      let busy = false;
      timer = setInterval(() => {
        if (busy) return;
        busy = true;
        running = sweep()
          .finally(() => (busy = false))
          .catch((err: unknown) => {
            if (!stopped) o.logger.warn({ err: describe(err) }, 'could not sweep expired held mail; will try again');
          });
      }, every).unref();
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
