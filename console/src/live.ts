/** How a live page gets its figures: the stream (connecting, live, reconnecting) or, after it failed repeatedly, polling. */
export type LiveMode = 'connecting' | 'live' | 'reconnecting' | 'polling';

/** What followLive needs of an EventSource. */
export interface EventSourceLike {
  /** 0 connecting, 1 open, 2 closed (the browser gave up: an error status, or not an event stream). */
  readonly readyState: number;
  addEventListener(type: string, listener: (e: { data?: unknown }) => void): void;
  close(): void;
}

export interface LiveOptions<T> {
  url: string;
  /** Opens the stream: `new EventSource(url)` in the browser. */
  connect: (url: string) => EventSourceLike;
  /** The `data` of a `stats` event, read. */
  parse: (data: string) => T;
  /** One reading without the stream, for polling. */
  poll: () => Promise<T>;
  onData: (data: T) => void;
  /** A failure to show (undefined: none now). */
  onError: (error: string | undefined) => void;
  /** The mode changed; `note` says why a stream ended, when the server said. */
  onMode: (mode: LiveMode, note?: string) => void;
  /** Failures in a row without figures in between, after which the page polls instead. */
  maxFailures?: number;
  /** Polling: one reading this often. */
  pollMs?: number;
  /** Wait before a new stream once the browser gave up on one. */
  retryMs?: number;
  /** While polling, the stream is tried again this often. */
  liveAgainMs?: number;
}

/**
 * Follows a server-sent event stream of `stats` events (with `problem` for figures unavailable
 * for now, and `end` when the server ends it). The browser reconnects by itself after a stream
 * ends; when it gives up (an error status) a new stream is opened after `retryMs`. After
 * `maxFailures` failures in a row the page polls every `pollMs`, and tries the stream again after
 * `liveAgainMs`. Returns the function that stops it all.
 */
export function followLive<T>(o: LiveOptions<T>): () => void {
  const maxFailures = o.maxFailures ?? 3;
  const pollMs = o.pollMs ?? 3_000;
  const retryMs = o.retryMs ?? 3_000;
  const liveAgainMs = o.liveAgainMs ?? 60_000;
  let es: EventSourceLike | undefined;
  let failures = 0;
  let stopped = false;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const later = (fn: () => void, ms: number) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  let polling: ReturnType<typeof setInterval> | undefined;

  function open() {
    if (stopped) return;
    o.onMode(failures > 0 ? 'reconnecting' : 'connecting');
    const source = o.connect(o.url);
    es = source;
    const current = () => es === source && !stopped;
    source.addEventListener('open', () => {
      if (current()) o.onMode('live');
    });
    source.addEventListener('stats', (e) => {
      if (!current()) return;
      let data: T;
      try {
        data = o.parse(String(e.data));
      } catch {
        return o.onError('the live figures could not be read');
      }
      failures = 0;
      o.onData(data);
      o.onError(undefined);
      o.onMode('live');
    });
    source.addEventListener('problem', (e) => {
      if (!current()) return;
      try {
        o.onError(String((JSON.parse(String(e.data)) as { error?: unknown }).error ?? 'the figures are unavailable'));
      } catch {
        o.onError('the figures are unavailable');
      }
    });
    source.addEventListener('end', (e) => {
      if (!current()) return;
      let reason: string | undefined;
      try {
        reason = String((JSON.parse(String(e.data)) as { reason?: unknown }).reason ?? '') || undefined;
      } catch {
        reason = undefined;
      }
      o.onMode('reconnecting', reason);
    });
    source.addEventListener('error', () => {
      if (!current()) return;
      failures++;
      if (failures >= maxFailures) {
        source.close();
        es = undefined;
        return poll();
      }
      if (source.readyState === 2) {
        es = undefined;
        later(open, retryMs);
      }
      o.onMode('reconnecting');
    });
  }

  function poll() {
    o.onMode('polling');
    const once = () =>
      o.poll().then(
        (d) => {
          if (!stopped && polling !== undefined) {
            o.onData(d);
            o.onError(undefined);
          }
        },
        (err: Error) => {
          if (!stopped && polling !== undefined) o.onError(err.message);
        },
      );
    polling = setInterval(once, pollMs);
    void once();
    later(() => {
      clearInterval(polling);
      polling = undefined;
      // One more failure and the page polls again.
      failures = maxFailures - 1;
      open();
    }, liveAgainMs);
  }

  open();
  return () => {
    stopped = true;
    es?.close();
    es = undefined;
    clearInterval(polling);
    polling = undefined;
    for (const t of timers) clearTimeout(t);
    timers.clear();
  };
}
