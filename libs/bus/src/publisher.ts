import { headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { JetStreamApiError, type PubAck } from '@nats-io/jetstream';
import { newInbox } from './inbox.js';

interface Pending {
  resolve(ack: PubAck): void;
  reject(err: Error): void;
  deadline: number;
  subject: string;
}

/** A publish JetStream did not answer in time (the message may or may not be stored). */
export class PublishTimeoutError extends Error {
  constructor(subject: string, ms: number) {
    super(`JetStream did not acknowledge the publish to ${subject} within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/**
 * JetStream publishes awaiting their acks, as `js.publish` does, for the hot paths (every message
 * crosses two or three of them). nats.js makes each publish a request: a timer, a deferred and two
 * Error objects each (one only to reject a promise already resolved), which profiles put at a
 * fifth of the scheduler's CPU per message. Here the acks come to one subscription, a token in the
 * reply subject finds the waiting publish, and one sweep every so often fails those past their
 * deadline. Every publish has the same timeout, so the map's insertion order is deadline order
 * and the sweep stops at the first entry still in time.
 */
export class AckedPublisher {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  readonly #prefix: string;
  readonly #pending = new Map<string, Pending>();
  readonly #sub: Subscription;
  readonly #sweeper: NodeJS.Timeout;
  #next = 0;
  #closed = false;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    this.#prefix = `${newInbox(nc)}.`;
    this.#sub = nc.subscribe(`${this.#prefix}*`, { callback: (err, m) => (err ? this.#failAll(err) : this.#settle(m)) });
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(50, Math.min(500, timeoutMs / 4))).unref();
  }

  /** Stores `data` on `subject`, with `msgId` as its Nats-Msg-Id when given (JetStream dedupes on it). */
  publish(subject: string, data: Uint8Array, msgId?: string, headers?: MsgHdrs): Promise<PubAck> {
    let h = headers;
    if (msgId !== undefined) {
      h ??= natsHeaders();
      h.set('Nats-Msg-Id', msgId);
    }
    if (this.#closed) return Promise.reject(new Error('connection closed'));
    const token = (this.#next++).toString(36);
    return new Promise<PubAck>((resolve, reject) => {
      this.#pending.set(token, { resolve, reject, deadline: performance.now() + this.#timeoutMs, subject });
      try {
        this.#nc.publish(subject, data, h ? { reply: this.#prefix + token, headers: h } : { reply: this.#prefix + token });
      } catch (err) {
        this.#pending.delete(token);
        reject(err as Error);
      }
    });
  }

  #settle(m: Msg) {
    const token = m.subject.slice(this.#prefix.length);
    const p = this.#pending.get(token);
    if (!p) return; // answered after its deadline: the caller was already told
    this.#pending.delete(token);
    if (m.data.length === 0 && m.headers?.code === 503) {
      p.reject(new Error(`no JetStream stream takes ${p.subject} (no responders)`));
      return;
    }
    let r: Partial<PubAck> & { error?: { code: number; err_code: number; description: string } };
    try {
      r = m.json();
    } catch {
      p.reject(new Error(`invalid JetStream ack for ${p.subject}`));
      return;
    }
    if (r.error) p.reject(new JetStreamApiError(r.error));
    else if (!r.stream) p.reject(new Error(`invalid JetStream ack for ${p.subject}`));
    else p.resolve({ stream: r.stream, seq: r.seq ?? 0, duplicate: r.duplicate ?? false, domain: r.domain ?? '' } as PubAck);
  }

  #sweep() {
    const now = performance.now();
    for (const [token, p] of this.#pending) {
      if (p.deadline > now) break;
      this.#pending.delete(token);
      p.reject(new PublishTimeoutError(p.subject, this.#timeoutMs));
    }
  }

  #failAll(err: Error) {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  close() {
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#failAll(new Error('connection closed'));
    this.#sub.unsubscribe();
  }
}
