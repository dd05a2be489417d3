import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connectBus, type Bus } from '@relay/bus';
import { parseConfig, readEnv } from '@relay/config';
import { ErrorCode, RelayError, type RunnableService } from '@relay/core';
import { create } from '@bufbuild/protobuf';
import { MessageState, StatusEventSchema, type StatusEvent } from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { clientEntry, dropBus, eventually, newClient, serviceTestEnv, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createIngest } from '../ingest.js';
import type { Role } from './api.js';
import { createQueueEvents } from './queue-events.js';
import { createSigner, newSignInId, type Session } from './session.js';

/** ingest in this process; status events are published here as the other services would. */
const prefix = uniquePrefix('queue-events');
const PUBLIC = 'http://localhost:8080';
const sessionKey = randomBytes(32);
const signer = createSigner(sessionKey);
const PER_PERSON = 2;

let ingest: RunnableService & { queueEvents: { size: number } };
let bus: Bus;
let base: string;

beforeAll(async () => {
  const env = readEnv({
    NATS_URL: testNatsUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_GRPC_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_METRICS_PORT: '0',
    RELAY_HOST: '127.0.0.1',
    RELAY_PUBLIC_URL: PUBLIC,
    RELAY_CONSOLE_SESSION_KEY: sessionKey.toString('base64'),
    ...serviceTestEnv('ingest'),
  });
  const sender = (id: string, owners?: string[]) => ({
    id,
    from: `${id}@campus.example`,
    ...(owners ? { owners } : {}),
    transport: 'smtp',
    smtp: { host: '127.0.0.1', port: 2525, security: 'none' },
  });
  const config = parseConfig(
    stringify({
      console: { issuer: 'https://idp.campus.example', client_id: 'console-app', admins: ['ada@campus.example'] },
      clients: [clientEntry(newClient('app', ['a', 'b']))],
      senders: [sender('a', ['olive@campus.example']), sender('b')],
    }),
    {},
  );
  // No refresh within a test: a `stats` event after a change comes from the change.
  ingest = await createIngest(
    { env, config, logger: createLogger({ service: 'test', level: 'silent' }) },
    { queueEvents: { perPerson: PER_PERSON, refreshMs: 600_000 } },
  );
  const ports = await ingest.start();
  base = `http://127.0.0.1:${ports.http}`;
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'queue-events-test' });
});

afterAll(async () => {
  await ingest?.stop();
  await bus?.close();
  await dropBus(prefix);
});

/** A session cookie for `email`, made with ingest's own key (as a sign-in would). */
const cookieFor = (email: string, ttlMs = 3_600_000) =>
  `relay_session=${signer.sign('session', { email, name: email, groups: [], sid: newSignInId(), iat: Date.now(), csrf: 'c'.repeat(32) }, ttlMs)}`;

interface SseEvent {
  event: string;
  data: string;
}

interface Stream {
  status: number;
  events: SseEvent[];
  /** Resolves when the server ends the response. */
  done: Promise<void>;
  /** Waits for an event that `match` accepts (among those so far and to come). */
  next(match: (e: SseEvent) => boolean): Promise<SseEvent>;
  close(): void;
}

async function open(cookie: string | undefined, init: RequestInit = {}, url = `${base}/api/events/queues`): Promise<Stream & { body: string }> {
  const abort = new AbortController();
  const res = await fetch(url, { ...init, headers: { ...(cookie ? { cookie } : {}), ...init.headers }, signal: abort.signal });
  const events: SseEvent[] = [];
  const waiting = new Set<() => void>();
  if (res.status !== 200 || !res.body) {
    return { status: res.status, events, body: await res.text(), done: Promise.resolve(), next: () => Promise.reject(new Error('no stream')), close: () => {} };
  }
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const done = (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf('\n\n');
          const fields = new Map(block.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trimStart()] as const));
          if (!fields.has('data')) continue;
          events.push({ event: fields.get('event') ?? 'message', data: fields.get('data')! });
          for (const w of waiting) w();
        }
      }
    } catch {
      // aborted by the test
    } finally {
      for (const w of waiting) w();
    }
  })();
  let ended = false;
  void done.then(() => (ended = true));
  const next = (match: (e: SseEvent) => boolean) =>
    new Promise<SseEvent>((resolve, reject) => {
      const check = () => {
        const found = events.find(match);
        if (found) {
          waiting.delete(check);
          resolve(found);
        } else if (ended) {
          waiting.delete(check);
          reject(new Error(`stream ended without the event; got ${JSON.stringify(events)}`));
        }
      };
      waiting.add(check);
      void done.then(check);
      check();
    });
  return { status: 200, events, body: '', done, next, close: () => abort.abort() };
}

type Stats = { senders?: Array<{ sender: string; queued?: string }> };
const stats = (e: SseEvent) => JSON.parse(e.data) as Stats;
const queuedOf = (e: SseEvent, sender: string) => Number(stats(e).senders?.find((s) => s.sender === sender)?.queued ?? 0);

const publish = (messageId: string, sender: string, state: MessageState) =>
  bus.publishStatus({ messageId, sender, state, attempt: 0, detail: '', service: 'test', client: 'app' });

describe('GET /api/events/queues', () => {
  it('needs a sign-in with a role, a GET, and the console origin', async () => {
    const none = await open(undefined);
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body)).toMatchObject({ error: 'not signed in', signIn: '/auth/login' });
    expect((await open(cookieFor('zed@campus.example'))).status).toBe(403);
    expect((await open(cookieFor('ada@campus.example'), { method: 'POST' })).status).toBe(405);
    expect((await open(cookieFor('ada@campus.example'), { headers: { origin: 'https://evil.example' } })).status).toBe(403);
    // An expired sign-in is no sign-in.
    const expired = `relay_session=${createSigner(sessionKey, () => Date.now() - 10_000).sign('session', { email: 'ada@campus.example', name: 'a', groups: [], sid: newSignInId(), iat: Date.now(), csrf: 'c' }, 1_000)}`;
    expect((await open(expired)).status).toBe(401);
  });

  it("sends the figures at once, an owner's for their senders only, and again after a state change", async () => {
    const olive = await open(cookieFor('olive@campus.example'));
    const ada = await open(cookieFor('ada@campus.example'));
    try {
      const first = await olive.next((e) => e.event === 'stats');
      expect(stats(first).senders!.map((s) => s.sender)).toEqual(['a']);
      expect(queuedOf(first, 'a')).toBe(0);
      const all = await ada.next((e) => e.event === 'stats');
      expect(all && stats(all).senders!.map((s) => s.sender)).toEqual(['a', 'b']);

      // A message of b: the admin's stream shows it; the owner's shows nothing of b.
      await publish('m-b-1', 'b', MessageState.QUEUED);
      await ada.next((e) => e.event === 'stats' && queuedOf(e, 'b') === 1);
      // A message of a reaches the owner (no refresh runs in this test: the change brought it).
      await publish('m-a-1', 'a', MessageState.QUEUED);
      const queued = olive.events.indexOf(await olive.next((e) => e.event === 'stats' && queuedOf(e, 'a') === 1));
      await publish('m-a-1', 'a', MessageState.SENT);
      await olive.next((e) => e.event === 'stats' && queuedOf(e, 'a') === 0 && olive.events.indexOf(e) > queued);
      for (const e of olive.events.filter((x) => x.event === 'stats')) expect(stats(e).senders!.map((s) => s.sender)).toEqual(['a']);
    } finally {
      olive.close();
      ada.close();
    }
  });

  it('holds a few streams per person, and frees one when its client goes away', async () => {
    await eventually(() => (ingest.queueEvents.size === 0 ? true : undefined));
    const cookie = cookieFor('olive@campus.example');
    const streams = [await open(cookie), await open(cookie)];
    const over = await open(cookie);
    expect(over.status).toBe(429);
    expect(JSON.parse(over.body).error).toBe(`live queue streams: at most ${PER_PERSON} at once per person; close another Queues page`);
    // Someone else still gets theirs.
    const ada = await open(cookieFor('ada@campus.example'));
    expect(ada.status).toBe(200);
    ada.close();
    streams[0]!.close();
    await eventually(() => (ingest.queueEvents.size === 1 ? true : undefined));
    const again = await open(cookie);
    expect(again.status).toBe(200);
    again.close();
    streams[1]!.close();
    await eventually(() => (ingest.queueEvents.size === 0 ? true : undefined));
  });

  it('ends the stream when the sign-in expires', async () => {
    const s = await open(cookieFor('olive@campus.example', 1_500));
    const end = await s.next((e) => e.event === 'end');
    expect(JSON.parse(end.data)).toEqual({ reason: 'the sign-in expired; sign in again' });
    await s.done;
  });

  it('ends open streams when ingest stops', async () => {
    const s = await open(cookieFor('ada@campus.example'));
    await s.next((e) => e.event === 'stats');
    await ingest.stop();
    const end = await s.next((e) => e.event === 'end');
    expect(JSON.parse(end.data)).toEqual({ reason: 'ingest is stopping' });
    await s.done;
    expect(ingest.queueEvents.size).toBe(0);
  });
});

describe('createQueueEvents', () => {
  /** A status feed the test drives, and an API whose answers it sets. */
  function fixture() {
    const listeners = new Set<{ onEvent: (ev: StatusEvent) => void; onEnd: (reason: string) => void }>();
    const feed = {
      listen(onEvent: (ev: StatusEvent) => void, onEnd: (reason: string) => void) {
        const l = { onEvent, onEnd };
        listeners.add(l);
        return { ready: Promise.resolve(), close: () => listeners.delete(l) };
      },
    };
    const state = { answer: (): unknown => ({ senders: [{ sender: 'a', queued: String(reads) }] }), role: { kind: 'owner', senders: ['a'] } as Role };
    let reads = 0;
    const scopes: string[] = [];
    const api = {
      call: async (_s: Session, role: Role) => {
        reads++;
        scopes.push(role.kind === 'owner' ? role.senders.join(',') : role.kind);
        return state.answer() as never;
      },
    };
    const events = createQueueEvents({
      api,
      feed,
      logger: createLogger({ service: 'test', level: 'silent' }),
      limits: { settleMs: 5, minIntervalMs: 10, refreshMs: 600_000 },
    });
    const session: Session = { email: 'olive@campus.example', name: 'Olive', groups: [], sid: 'test-sign-in', iat: 0, csrf: 'c', exp: Date.now() + 3_600_000 };
    const server: Server = createServer((_req, res) => events.serve(res, session, () => state.role));
    const listening = new Promise<string>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)),
    );
    const change = (sender: string) => {
      for (const l of listeners) l.onEvent(create(StatusEventSchema, { messageId: 'm', sender, state: MessageState.QUEUED }));
    };
    return {
      listeners,
      state,
      events,
      listening,
      change,
      scopes,
      close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
    };
  }

  it('says when the figures are unavailable, keeps the stream, and reads again after the next change', async () => {
    const f = fixture();
    try {
      f.state.answer = () => {
        throw new RelayError(ErrorCode.Unavailable, 'queue figures are unavailable');
      };
      const s = await open(undefined, {}, await f.listening);
      expect(JSON.parse((await s.next((e) => e.event === 'problem')).data)).toEqual({ error: 'queue figures are unavailable' });
      f.state.answer = () => ({ senders: [{ sender: 'a', queued: '7' }] });
      f.change('a');
      expect(JSON.parse((await s.next((e) => e.event === 'stats')).data)).toEqual({ senders: [{ sender: 'a', queued: '7' }] });
      s.close();
      await eventually(() => (f.listeners.size === 0 && f.events.size === 0 ? true : undefined));
    } finally {
      await f.close();
    }
  });

  it('reads once for streams of the same scope woken by the same change', async () => {
    const f = fixture();
    try {
      const url = await f.listening;
      const streams = [await open(undefined, {}, url), await open(undefined, {}, url), await open(undefined, {}, url)];
      for (const s of streams) await s.next((e) => e.event === 'stats');
      const before = f.scopes.length;
      f.change('a');
      for (const s of streams) await s.next((e) => e.event === 'stats' && s.events.filter((x) => x.event === 'stats').indexOf(e) === 1);
      expect(f.scopes.slice(before)).toEqual(['a']);
      for (const s of streams) s.close();
    } finally {
      await f.close();
    }
  });

  it('ends the stream when the person loses their role, or the feed ends', async () => {
    const f = fixture();
    try {
      const url = await f.listening;
      const a = await open(undefined, {}, url);
      await a.next((e) => e.event === 'stats');
      f.state.role = { kind: 'none' };
      f.change('a');
      expect(JSON.parse((await a.next((e) => e.event === 'end')).data)).toEqual({ reason: 'olive@campus.example no longer has a role in the console' });
      await a.done;
      // Without a role, no stream at all.
      const refused = await open(undefined, {}, url);
      expect(refused.status).toBe(403);
      f.state.role = { kind: 'admin' };
      const b = await open(undefined, {}, url);
      await b.next((e) => e.event === 'stats');
      for (const l of [...f.listeners]) l.onEnd('the status feed ended (message broker unreachable)');
      expect(JSON.parse((await b.next((e) => e.event === 'end')).data)).toEqual({ reason: 'the status feed ended (message broker unreachable)' });
      await b.done;
      expect(f.events.size).toBe(0);
    } finally {
      await f.close();
    }
  });
});
