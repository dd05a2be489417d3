import type { ServerResponse } from 'node:http';
import { describe, isRelayError } from '@relay/core';
import type { JsonValue } from '@bufbuild/protobuf';
import type { Logger } from '@relay/telemetry';
import type { StatusFeed, StatusListener } from '../admin-watch.js';
import { PAGE_HEADERS } from '../public-http.js';
import type { ConsoleApi, Role } from './api.js';
import type { Session } from './session.js';

/** Where the console's Queues page listens. */
export const QUEUE_EVENTS_PATH = '/api/events/queues';

export interface QueueEventsLimits {
  /** Streams one person (by address) may have open at once; one more gets 429. */
  perPerson: number;
  /** Streams one ingest replica serves at once; one more gets 429. */
  total: number;
  /** Least time between two `stats` events of a stream. */
  minIntervalMs: number;
  /** A `stats` event at least this often, changes or not: ages and release times move on. */
  refreshMs: number;
  /** A comment this often, so proxies and the browser see the stream alive. */
  heartbeatMs: number;
  /** Wait after a state change before reading the figures: the message index is written just after the event. */
  settleMs: number;
  /** One more reading this long after a change: GetQueueStats reuses one scan of the index for 2 seconds. */
  followUpMs: number;
  /** Bytes a stream may have waiting for a client that does not read; past it the stream is closed. */
  maxBufferedBytes: number;
}

export const QUEUE_EVENTS_DEFAULTS: QueueEventsLimits = {
  perPerson: 4,
  total: 200,
  minIntervalMs: 1_000,
  refreshMs: 5_000,
  heartbeatMs: 15_000,
  settleMs: 250,
  followUpMs: 2_500,
  maxBufferedBytes: 256 * 1024,
};

/** Streams of the same scope reading within this long of each other share one GetQueueStats: a change wakes them all at once. */
const SHARE_MS = 200;

/** setTimeout's longest delay (about 24.8 days); a longer sign-in is checked again then. */
const MAX_TIMER_MS = 2_147_483_647;

export interface QueueEventsOptions {
  api: ConsoleApi;
  /** The status feed WatchMessages reads (the watch hub). */
  feed: StatusFeed;
  logger: Logger;
  limits?: Partial<QueueEventsLimits>;
  now?: () => number;
}

export interface QueueEvents {
  /**
   * Answers `GET /api/events/queues` for a signed-in person with a server-sent event stream of
   * GetQueueStats, scoped by `role` (asked again at every reading: the configuration may change).
   */
  serve(res: ServerResponse, session: Session, role: () => Role): void;
  /** Streams open now. */
  readonly size: number;
  /** Ends every stream (an `end` event, then the response ends) and refuses new ones: ingest is stopping. */
  closeAll(): void;
}

interface Stream {
  person: string;
  end(reason: string): void;
}

/**
 * The Queues page's live figures: a `stats` event (GetQueueStats as the JSON API answers it) at
 * once, then after each state change of a sender the person sees (at most one a second, read a
 * moment after the change and once more when the index scan is surely new), and every
 * `refreshMs` regardless. A comment every `heartbeatMs`. Changes come from the status feed
 * WatchMessages uses (one subscription for all); streams of the same scope that read at the same
 * moment share one reading. A stream ends with an `end` event when the
 * sign-in expires, the person loses their role, or ingest stops; and when the client goes away.
 */
export function createQueueEvents(opts: QueueEventsOptions): QueueEvents {
  const limits = { ...QUEUE_EVENTS_DEFAULTS, ...opts.limits };
  const now = opts.now ?? Date.now;
  const streams = new Set<Stream>();
  let closed = false;
  /** The last reading of each scope (all senders, or an owner's senders), shared by streams that read at the same moment. */
  const readings = new Map<string, { at: number; result: Promise<JsonValue> }>();

  /** A reading for `role`'s scope started after `changedAt` (the stream's last change): shared, or a new one. */
  function reading(session: Session, role: Exclude<Role, { kind: 'none' }>, changedAt: number): Promise<JsonValue> {
    const key = role.kind === 'admin' ? '*' : [...role.senders].sort().join('\n');
    const t = now();
    for (const [k, r] of readings) if (t - r.at >= SHARE_MS) readings.delete(k);
    const known = readings.get(key);
    if (known && known.at > changedAt) return known.result;
    const result = opts.api.call(session, role, 'GetQueueStats', {});
    readings.set(key, { at: t, result });
    result.catch(() => {
      if (readings.get(key)?.result === result) readings.delete(key);
    });
    return result;
  }

  const refuse = (res: ServerResponse, status: number, error: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { ...PAGE_HEADERS, 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify({ error }));
  };

  function serve(res: ServerResponse, session: Session, role: () => Role) {
    const person = session.email.toLowerCase();
    const first = role();
    if (first.kind === 'none') return refuse(res, 403, `${session.email} has no role in the console`);
    if (closed) return refuse(res, 503, 'ingest is stopping; connect again', { 'retry-after': '5' });
    if (streams.size >= limits.total)
      return refuse(res, 429, `live queue streams: at most ${limits.total} at once on this ingest replica; try again later`, { 'retry-after': '30' });
    if ([...streams].filter((s) => s.person === person).length >= limits.perPerson)
      return refuse(res, 429, `live queue streams: at most ${limits.perPerson} at once per person; close another Queues page`, { 'retry-after': '30' });

    let ended = false;
    let listener: StatusListener | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    /** When the next reading is due (the timer's time), if one is. */
    let due: number | undefined;
    let lastRunAt = Number.NEGATIVE_INFINITY;
    let followUpUntil = 0;
    /** When the last change this stream shows came. */
    let changedAt = Number.NEGATIVE_INFINITY;
    let running = false;
    let again = false;
    /** The senders the person sees: undefined for an admin (all). */
    let visible = first.kind === 'owner' ? new Set(first.senders) : undefined;

    const write = (chunk: string) => {
      if (ended) return;
      if (res.writableLength > limits.maxBufferedBytes) return stream.end('the client reads too slowly');
      res.write(chunk);
    };
    const event = (name: string, data: unknown) => write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);

    /** A reading at `at` or later, at least minIntervalMs after the last; an earlier one already due stands. */
    const want = (at: number) => {
      if (ended) return;
      const when = Math.max(at, lastRunAt + limits.minIntervalMs);
      if (due !== undefined && due <= when) return;
      clearTimeout(timer);
      due = when;
      timer = setTimeout(() => void read(), Math.max(0, when - now()));
    };

    async function read() {
      due = undefined;
      timer = undefined;
      if (ended) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      lastRunAt = now();
      try {
        const r = role();
        if (r.kind === 'none') return stream.end(`${session.email} no longer has a role in the console`);
        visible = r.kind === 'owner' ? new Set(r.senders) : undefined;
        const stats = await reading(session, r, changedAt);
        event('stats', stats);
      } catch (err) {
        // The figures are away for now (the broker did not answer): said, and read again later.
        if (!isRelayError(err)) opts.logger.error({ err: describe(err) }, 'live queue figures failed');
        event('problem', { error: isRelayError(err) ? err.message : 'internal error' });
      } finally {
        running = false;
        if (again) {
          again = false;
          want(now());
        } else {
          want(lastRunAt < followUpUntil ? Math.min(followUpUntil, lastRunAt + limits.refreshMs) : lastRunAt + limits.refreshMs);
        }
      }
    }

    const heartbeat = setInterval(() => write(': keep-alive\n\n'), limits.heartbeatMs);
    const expiry = setTimeout(() => stream.end('the sign-in expired; sign in again'), Math.min(MAX_TIMER_MS, Math.max(0, session.exp - now())));
    const stream: Stream = {
      person,
      end(reason) {
        if (ended) return;
        event('end', { reason });
        cleanUp();
        res.end();
      },
    };
    const cleanUp = () => {
      ended = true;
      streams.delete(stream);
      clearTimeout(timer);
      clearInterval(heartbeat);
      clearTimeout(expiry);
      listener?.close();
    };
    streams.add(stream);
    res.on('close', cleanUp);

    try {
      listener = opts.feed.listen(
        (ev) => {
          if (visible && !visible.has(ev.sender)) return;
          const t = now();
          changedAt = t;
          followUpUntil = t + limits.settleMs + limits.followUpMs;
          want(t + limits.settleMs);
        },
        (reason) => stream.end(reason),
      );
    } catch (err) {
      cleanUp();
      return refuse(res, 503, isRelayError(err) ? `${err.message}; connect again` : 'live figures are unavailable', { 'retry-after': '5' });
    }
    res.writeHead(200, {
      ...PAGE_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      // Proxies that buffer responses (nginx) pass this one on as it comes.
      'x-accel-buffering': 'no',
    });
    // The browser waits this long before it connects again after the stream ended.
    res.write('retry: 3000\n\n');
    // The first reading once the subscription is in place: from then on no change is missed.
    listener.ready.then(
      () => want(now()),
      () => {},
    );
  }

  return {
    serve,
    get size() {
      return streams.size;
    },
    closeAll() {
      closed = true;
      for (const s of [...streams]) s.end('ingest is stopping');
    },
  };
}
