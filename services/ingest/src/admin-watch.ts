import { create, fromBinary } from '@bufbuild/protobuf';
import { Metadata, status, type ServerWritableStream } from '@grpc/grpc-js';
import type { Subscription } from '@nats-io/nats-core';
import { readIndexRecord, type Bus } from '@relay/bus';
import { describe, ErrorCode, RelayError } from '@relay/core';
import { MessageEventSchema, MessageState, StatusEventSchema, toGrpcError, type MessageEvent, type StatusEvent, type WatchMessagesRequest } from '@relay/proto';
import type { Logger } from '@relay/telemetry';
import { requireAdmin, type Authenticator } from './auth.js';

export interface WatchOptions {
  /** Watches one ingest serves at once; one more is refused with RESOURCE_EXHAUSTED. */
  maxWatches: number;
  /**
   * Events one watch may have waiting for its client (written but not yet taken by HTTP/2, plus
   * those waiting for a client lookup). A client that reads slower than events come is told so
   * with RESOURCE_EXHAUSTED rather than made to cost memory without bound.
   */
  maxBuffered: number;
  /** Message ids whose client is remembered (learned from events that name it). */
  clientCacheSize: number;
}

export const WATCH_DEFAULTS: WatchOptions = { maxWatches: 64, maxBuffered: 1_000, clientCacheSize: 10_000 };

const MAX_FILTER_CHARS = 256;

interface Watcher {
  req: WatchMessagesRequest;
  /** The call's metadata: its key is checked again when the configuration changes. */
  metadata: Metadata;
  offer(ev: StatusEvent, client: string | undefined): void;
  end(code: status, details: string): void;
}

/** One in-process listener on the status feed (see WatchHub.listen). */
export interface StatusListener {
  /** Settles once the broker has the subscription: from then on no change is missed. Rejects when it could not subscribe. */
  ready: Promise<void>;
  /** Stops listening (onEnd is not called). */
  close(): void;
}

/** What in-process readers of the status feed (the console's live pages) need of the hub. */
export interface StatusFeed {
  /**
   * Every state change from now on, on the subscription WatchMessages uses; no authentication
   * (the caller has checked who asks) and no filter (the caller picks what it shows). `onEnd`
   * is called once when the feed ends: the broker failed or ingest is stopping. Throws
   * UNAVAILABLE once ingest is stopping.
   */
  listen(onEvent: (ev: StatusEvent) => void, onEnd: (reason: string) => void): StatusListener;
}

export interface WatchHub extends StatusFeed {
  /** The WatchMessages handler. */
  watchMessages(call: ServerWritableStream<WatchMessagesRequest, MessageEvent>): void;
  /** Watches open now. */
  readonly size: number;
  /** Ends every watch (UNAVAILABLE), every listener, and the subscription: ingest is stopping. */
  closeAll(): void;
  /** Checks every watch's key again (the configuration changed): a revoked or expired one ends it. */
  recheck(): void;
}

/**
 * AdminService.WatchMessages. All watches share one core NATS subscription on the status subjects,
 * made when the first watch starts and dropped when the last one ends: a watch sees the state
 * changes from its start on, nothing from before.
 *
 * The client filter: the QUEUED event at accept names the client, and so do the delivery
 * outcomes; others (SENDING, the scheduler's, cancels) may not. The client of a message is
 * remembered from any event that names it (the last `clientCacheSize` messages); for one not
 * remembered the message index is asked, only by a watch that filters on the client. Its lookups
 * keep the order of that watch's events and count towards its buffer.
 */
export function createWatchHub(bus: Bus, auth: Authenticator, logger: Logger, options: Partial<WatchOptions> = {}): WatchHub {
  const opts = { ...WATCH_DEFAULTS, ...options };
  const watchers = new Set<Watcher>();
  const listeners = new Set<{ onEvent: (ev: StatusEvent) => void; end: (reason: string) => void }>();
  const clients = new Map<string, string>();
  let sub: Subscription | undefined;
  /** Settles once the broker has the subscription (a round trip after it was sent). */
  let subscribed: Promise<void> = Promise.resolve();
  let closed = false;

  const remember = (id: string, client: string) => {
    clients.delete(id);
    clients.set(id, client);
    if (clients.size > opts.clientCacheSize) clients.delete(clients.keys().next().value!);
  };

  function subscribe() {
    sub = bus.nc.subscribe(bus.names.statusWildcard, {
      callback: (err, m) => {
        if (err) {
          logger.warn({ err: describe(err) }, 'status subscription for WatchMessages failed');
          for (const w of [...watchers]) w.end(status.UNAVAILABLE, 'the status feed ended (message broker unreachable); watch again');
          for (const l of [...listeners]) l.end('the status feed ended (message broker unreachable)');
          return;
        }
        let ev: StatusEvent;
        try {
          ev = fromBinary(StatusEventSchema, m.data);
        } catch {
          return; // not a status event
        }
        if (ev.client) remember(ev.messageId, ev.client);
        const client = ev.client || clients.get(ev.messageId);
        for (const w of watchers) w.offer(ev, client);
        for (const l of listeners) {
          try {
            l.onEvent(ev);
          } catch (err) {
            logger.error({ err: describe(err) }, 'a status listener failed');
          }
        }
      },
    });
    // The broker handles a connection's messages in order: once this PING is answered, it has the SUB.
    subscribed = bus.nc.flush();
  }

  function unsubscribeIfIdle() {
    if (watchers.size > 0 || listeners.size > 0 || !sub) return;
    sub.unsubscribe();
    sub = undefined;
  }

  async function lookupClient(id: string): Promise<string> {
    const known = clients.get(id);
    if (known !== undefined) return known;
    const r = await readIndexRecord(bus, id).catch(() => undefined);
    if (r?.client) remember(id, r.client);
    return r?.client ?? '';
  }

  function watchMessages(call: ServerWritableStream<WatchMessagesRequest, MessageEvent>) {
    const fail = (err: unknown) => call.emit('error', toGrpcError(err));
    // Authenticated (and its filters checked) before anything is subscribed.
    try {
      requireAdmin(auth, call.metadata);
      const r = call.request;
      if (!(r.state in MessageState)) throw new RelayError(ErrorCode.InvalidArgument, `state: ${r.state} is not a MessageState`);
      if (r.sender.length > MAX_FILTER_CHARS) throw new RelayError(ErrorCode.InvalidArgument, `sender: at most ${MAX_FILTER_CHARS} characters`);
      if (r.client.length > MAX_FILTER_CHARS) throw new RelayError(ErrorCode.InvalidArgument, `client: at most ${MAX_FILTER_CHARS} characters`);
      if (closed) throw new RelayError(ErrorCode.Unavailable, 'ingest is stopping; watch again');
      if (watchers.size >= opts.maxWatches) throw new RelayError(ErrorCode.ResourceExhausted, `watches: at most ${opts.maxWatches} at once per ingest replica`);
    } catch (err) {
      fail(err);
      return;
    }
    const req = call.request;
    let lookups = 0;
    let chain: Promise<void> = Promise.resolve();
    let ended = false;

    const send = (ev: StatusEvent, client: string) => {
      if (ended) return;
      if (call.writableLength + lookups >= opts.maxBuffered) {
        watcher.end(status.RESOURCE_EXHAUSTED, `the client reads too slowly: ${opts.maxBuffered} events waited for it; watch again`);
        return;
      }
      call.write(
        create(MessageEventSchema, { messageId: ev.messageId, state: ev.state, sender: ev.sender, client, at: ev.at, attempt: ev.attempt, detail: ev.detail }),
      );
    };

    const watcher: Watcher = {
      req,
      metadata: call.metadata,
      offer(ev, client) {
        if (req.state !== MessageState.UNSPECIFIED && ev.state !== req.state) return;
        if (req.sender && ev.sender !== req.sender) return;
        if (!req.client || (client !== undefined && lookups === 0)) {
          if (!req.client || client === req.client) send(ev, client ?? '');
          return;
        }
        // Its client must be looked up, or events before it are: in order, behind them.
        if (call.writableLength + ++lookups > opts.maxBuffered) {
          watcher.end(status.RESOURCE_EXHAUSTED, `the client reads too slowly: ${opts.maxBuffered} events waited for it; watch again`);
          return;
        }
        chain = chain.then(async () => {
          const c = client ?? (await lookupClient(ev.messageId));
          lookups--;
          if (c === req.client) send(ev, c);
        });
      },
      end(code, details) {
        if (ended) return;
        ended = true;
        watchers.delete(watcher);
        unsubscribeIfIdle();
        call.emit('error', { code, details, message: details });
      },
    };
    const stop = () => {
      ended = true;
      watchers.delete(watcher);
      unsubscribeIfIdle();
    };
    call.on('cancelled', stop);
    call.on('close', stop);
    watchers.add(watcher);
    if (!sub) subscribe();
    // Headers once the broker has the subscription: from then on the client misses no change.
    subscribed.then(
      () => {
        if (!ended) call.sendMetadata(new Metadata());
      },
      () => watcher.end(status.UNAVAILABLE, 'could not subscribe to state changes (message broker unreachable); watch again'),
    );
  }

  function listen(onEvent: (ev: StatusEvent) => void, onEnd: (reason: string) => void): StatusListener {
    if (closed) throw new RelayError(ErrorCode.Unavailable, 'ingest is stopping');
    let ended = false;
    const listener = {
      onEvent,
      end(reason: string) {
        if (ended) return;
        close();
        onEnd(reason);
      },
    };
    const close = () => {
      ended = true;
      listeners.delete(listener);
      unsubscribeIfIdle();
    };
    listeners.add(listener);
    if (!sub) subscribe();
    const ready = subscribed.catch((err: unknown) => {
      listener.end('could not subscribe to state changes (message broker unreachable)');
      throw err;
    });
    return { ready, close };
  }

  return {
    watchMessages,
    listen,
    get size() {
      return watchers.size;
    },
    recheck() {
      for (const w of [...watchers]) {
        try {
          const caller = auth.authenticate(w.metadata);
          if (!caller.admin) w.end(status.PERMISSION_DENIED, `client "${caller.name}" is no longer an admin client`);
        } catch (err) {
          w.end(status.UNAUTHENTICATED, (err as Error).message);
        }
      }
    },
    closeAll() {
      closed = true;
      for (const w of [...watchers]) w.end(status.UNAVAILABLE, 'ingest is stopping; watch again');
      for (const l of [...listeners]) l.end('ingest is stopping');
      sub?.unsubscribe();
      sub = undefined;
    },
  };
}
