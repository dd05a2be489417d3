import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type EventSourceLike, followLive, type LiveMode } from './live';

/** An EventSource the test drives. */
class FakeSource implements EventSourceLike {
  readyState = 0;
  closed = false;
  private listeners = new Map<string, Array<(e: { data?: unknown }) => void>>();
  addEventListener(type: string, listener: (e: { data?: unknown }) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  emit(type: string, data?: unknown) {
    if (type === 'open') this.readyState = 1;
    for (const l of this.listeners.get(type) ?? []) l({ data });
  }
  /** The connection failed: the browser retries (0) or gave up (2). */
  fail(readyState: 0 | 2) {
    this.readyState = readyState;
    this.emit('error');
  }
}

function follow(poll: () => Promise<number>) {
  const sources: FakeSource[] = [];
  const seen = { data: [] as number[], errors: [] as Array<string | undefined>, modes: [] as Array<[LiveMode, string | undefined]> };
  const stop = followLive<number>({
    url: '/api/events/queues',
    connect: (url) => {
      expect(url).toBe('/api/events/queues');
      const s = new FakeSource();
      sources.push(s);
      return s;
    },
    parse: (text) => (JSON.parse(text) as { n: number }).n,
    poll,
    onData: (d) => seen.data.push(d),
    onError: (e) => seen.errors.push(e),
    onMode: (m, note) => seen.modes.push([m, note]),
    maxFailures: 3,
    pollMs: 3_000,
    retryMs: 1_000,
    liveAgainMs: 60_000,
  });
  const mode = () => seen.modes.at(-1)?.[0];
  return { sources, seen, stop, mode };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('followLive', () => {
  it('shows the figures the stream sends, its problems, and that it is live', () => {
    const f = follow(async () => 0);
    expect(f.mode()).toBe('connecting');
    const s = f.sources[0]!;
    s.emit('open');
    expect(f.mode()).toBe('live');
    s.emit('stats', '{"n":1}');
    s.emit('problem', '{"error":"queue figures are unavailable"}');
    s.emit('stats', '{"n":2}');
    expect(f.seen.data).toEqual([1, 2]);
    expect(f.seen.errors).toEqual([undefined, 'queue figures are unavailable', undefined]);
    f.stop();
    expect(s.closed).toBe(true);
  });

  it('says it is reconnecting when the stream ends, and why', () => {
    const f = follow(async () => 0);
    const s = f.sources[0]!;
    s.emit('open');
    s.emit('end', '{"reason":"ingest is stopping"}');
    expect(f.seen.modes.at(-1)).toEqual(['reconnecting', 'ingest is stopping']);
    s.fail(0);
    expect(f.mode()).toBe('reconnecting');
    // The browser reconnects by itself: the same source becomes live again.
    s.emit('open');
    s.emit('stats', '{"n":5}');
    expect(f.mode()).toBe('live');
    expect(f.sources).toHaveLength(1);
    f.stop();
  });

  it('opens a new stream when the browser gave up on one', () => {
    const f = follow(async () => 0);
    f.sources[0]!.fail(2);
    expect(f.mode()).toBe('reconnecting');
    expect(f.sources).toHaveLength(1);
    vi.advanceTimersByTime(1_000);
    expect(f.sources).toHaveLength(2);
    f.sources[1]!.emit('stats', '{"n":3}');
    expect(f.mode()).toBe('live');
    f.stop();
  });

  it('polls after repeated failures, and tries the stream again later', async () => {
    let n = 10;
    const poll = vi.fn(async () => n++);
    const f = follow(poll);
    const s = f.sources[0]!;
    s.fail(0);
    s.fail(0);
    expect(poll).not.toHaveBeenCalled();
    s.fail(0);
    expect(s.closed).toBe(true);
    expect(f.mode()).toBe('polling');
    await vi.advanceTimersByTimeAsync(0);
    expect(f.seen.data).toEqual([10]);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(f.seen.data).toEqual([10, 11]);
    // A minute on: the stream again, and polling stops.
    await vi.advanceTimersByTimeAsync(57_000);
    expect(f.sources).toHaveLength(2);
    expect(f.mode()).toBe('reconnecting');
    const calls = poll.mock.calls.length;
    await vi.advanceTimersByTimeAsync(9_000);
    expect(poll.mock.calls.length).toBe(calls);
    // It fails at once: back to polling.
    f.sources[1]!.fail(2);
    expect(f.mode()).toBe('polling');
    f.stop();
    const after = poll.mock.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(poll.mock.calls.length).toBe(after);
  });

  it('shows a polling failure', async () => {
    const f = follow(async () => {
      throw new Error('not signed in');
    });
    for (let i = 0; i < 3; i++) f.sources[0]!.fail(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(f.seen.errors.at(-1)).toBe('not signed in');
    f.stop();
  });
});
