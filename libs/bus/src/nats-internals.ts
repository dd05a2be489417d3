import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { nanos, type Msg, type NatsConnection } from '@nats-io/nats-core';
import type { JsMsg } from '@nats-io/jetstream';
import { newInbox } from './inbox.js';

/**
 * The one place the relay reaches into nats.js past its public API. Written for these versions of
 * its packages; nats-internals.test.ts fails on any other, so an upgrade re-checks this file.
 */
export const NATS_WRITTEN_FOR = { '@nats-io/nats-core': '3.4.0', '@nats-io/jetstream': '3.4.0' } as const;

const require = createRequire(import.meta.url);

/** Where an installed nats.js package's main file (lib/mod.js) lies. */
const libOf = (pkg: keyof typeof NATS_WRITTEN_FOR) => dirname(require.resolve(pkg));

/** The installed version of a nats.js package. */
export function installedNatsVersion(pkg: keyof typeof NATS_WRITTEN_FOR): string {
  return (require(join(libOf(pkg), '..', 'package.json')) as { version: string }).version;
}

// Buys: a JsMsg (ack, nak, working, delivery info) for what batchPull pulls; nats.js does not export it.
const { toJsMsg } = require(join(libOf('@nats-io/jetstream'), 'jsmsg.js')) as { toJsMsg(m: Msg): JsMsg };

/** The part of nats.js's protocol handler (`nc.protocol`, not exported) this module touches. */
interface Protocol {
  outbound: { size(): number };
  pendingLimit: number;
  flushPending(): void;
  close(err?: Error): Promise<void>;
}

/**
 * Makes the connection write what it has buffered once per turn of the event loop instead of once
 * per microtask queue run.
 *
 * Buys: one socket write per batch of work instead of one per publish or ack (no public option).
 *
 * nats.js writes its buffer to the socket in a microtask after the first command put in it. A
 * service working on a batch of messages reaches its publishes and acks in separate microtask runs
 * (each message's handler awaits between them), so each went out in a write of its own. Deferred to
 * `setImmediate`, everything produced while handling what one read brought goes out in one write;
 * nothing waits longer than the rest of the current turn. `close` still writes what is buffered
 * first, and a buffer past nats.js's own limit is written at once.
 */
export function coalesceWrites(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: Protocol }).protocol;
  if (!protocol || typeof protocol.flushPending !== 'function' || typeof protocol.close !== 'function') {
    throw new Error(
      `nats.js has no protocol.flushPending/close here: coalesceWrites was written for @nats-io/nats-core ${NATS_WRITTEN_FOR['@nats-io/nats-core']}`,
    );
  }
  const flushNow = protocol.flushPending.bind(protocol);
  const close = protocol.close.bind(protocol);
  let scheduled = false;
  protocol.flushPending = () => {
    if (protocol.outbound.size() >= protocol.pendingLimit) return flushNow();
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
  protocol.close = (err?: Error) => {
    flushNow();
    return close(err);
  };
}

/** Messages pulled from a durable consumer; iterate, and `stop()` to end. */
export interface PulledMessages extends AsyncIterable<JsMsg> {
  stop(): void;
}

export interface BatchPullOptions {
  /** Most messages one pull asks for. */
  batch: number;
  /** How many messages there is room for now (free slots); a pull asks for no more. */
  room?: () => number;
  /**
   * The pause after a pull that found less than a full batch, so that mail arriving meanwhile
   * travels together (see batchPull).
   */
  lingerMs: number;
  /** How long a pull waits for the first message when the consumer had nothing. */
  idleWaitMs?: number;
  /** How much longer than its own expiry a pull is given to answer before the pull fails. */
  answerGraceMs?: number;
}

export const BATCH_PULL_DEFAULTS = { lingerMs: 25, idleWaitMs: 5_000, answerGraceMs: 2_000 };

/** The consumer is gone or JetStream does not answer: the caller opens it again. */
export class PullFailed extends Error {}

/**
 * Pulls a durable consumer's messages in batches.
 *
 * Buys: several messages per socket write while mail flows; `consume()` and `fetch()` make one each.
 *
 * While mail flows, each pull takes what has gathered (`no_wait`), and a pull that found less than
 * a full batch is followed by a pause of `lingerMs`: what arrived meanwhile then comes in one
 * write. When a pull finds nothing, the next one waits (up to `idleWaitMs`) for the first message,
 * which is handed on at once, so a quiet relay adds no delay to a lone message; a burst after a
 * quiet spell waits at most `lingerMs`. JsMsg comes from nats.js's unexported `toJsMsg`, and a
 * deleted consumer is told by the server's description text.
 */
export function batchPull(nc: NatsConnection, stream: string, consumer: string, opts: BatchPullOptions): PulledMessages {
  const idleWaitMs = opts.idleWaitMs ?? BATCH_PULL_DEFAULTS.idleWaitMs;
  const graceMs = opts.answerGraceMs ?? BATCH_PULL_DEFAULTS.answerGraceMs;
  const subject = `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`;
  const inbox = newInbox(nc);
  const queue: Msg[] = [];
  let wake: (() => void) | undefined;
  let stopped = false;
  const sub = nc.subscribe(inbox, {
    callback: (_err, m) => {
      queue.push(m);
      wake?.();
    },
  });
  const nextArrival = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });

  async function* messages(): AsyncGenerator<JsMsg> {
    let idle = true;
    try {
      while (!stopped) {
        const want = Math.min(opts.batch, opts.room?.() ?? opts.batch);
        if (want <= 0) {
          await sleep(opts.lingerMs);
          continue;
        }
        // Idle: wait for the first message only, so it is not held back for company.
        const ask: number = idle ? 1 : want;
        nc.publish(subject, JSON.stringify(idle ? { batch: 1, expires: nanos(idleWaitMs) } : { batch: ask, no_wait: true }), { reply: inbox });
        const started = performance.now();
        const giveUpAt = started + (idle ? idleWaitMs : 0) + graceMs;
        let got = 0;
        // A pull ends with its last message, or with a status: 404 (nothing there), 408 (expired).
        round: while (!stopped && got < ask) {
          if (queue.length === 0) {
            const left = giveUpAt - performance.now();
            // No answer at all: NATS 2.9 does not answer pulls for a consumer that does not exist
            // (or the server restarted meanwhile). The caller opens (and makes) it again.
            if (left <= 0) throw new PullFailed(`pull from ${stream}/${consumer}: no answer in ${Math.round(giveUpAt - started)} ms; the consumer may be gone`);
            await nextArrival(left);
            continue;
          }
          const m = queue.shift()!;
          const code = m.headers?.code ?? 0;
          if (code === 0 || m.data.length > 0) {
            got++;
            yield toJsMsg(m);
            continue;
          }
          switch (code) {
            case 100: // heartbeat (not asked for)
              continue;
            case 404:
            case 408:
              break round;
            case 409:
              // The consumer was deleted, or the pull was refused (too many waiting, say).
              if (/deleted|push based/i.test(m.headers!.description)) throw new PullFailed(`pull from ${stream}/${consumer}: ${m.headers!.description}`);
              await sleep(opts.lingerMs);
              break round;
            default:
              // 503: no responders (no such consumer, or JetStream not answering).
              throw new PullFailed(`pull from ${stream}/${consumer}: ${code} ${m.headers!.description}`);
          }
        }
        if (got === ask && !idle) continue; // a full batch: more is likely waiting
        idle = got === 0;
        if (!idle) await sleep(opts.lingerMs);
      }
    } finally {
      stopped = true;
      sub.unsubscribe();
      // Pulled but never handed on: back to the consumer at once rather than after the ack wait.
      for (const m of queue.splice(0)) {
        if (m.data.length > 0 && m.reply) nc.publish(m.reply, '-NAK');
      }
    }
  }

  const gen = messages();
  return {
    stop() {
      stopped = true;
      wake?.();
    },
    [Symbol.asyncIterator]: () => gen,
  };
}
