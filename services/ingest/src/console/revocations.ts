import { createHash } from 'node:crypto';
import { applyLimits, type Bus } from '@relay/bus';
import { describe } from '@relay/core';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from '@relay/telemetry';

/**
 * How much longer than a sign-in a revocation is kept: cookies are signed with the clock of the
 * replica that signed the person in, entries expire by the broker's.
 */
export const CLOCK_ALLOWANCE_MS = 5 * 60_000;
/** The start waits this long at most for the revocations already stored (a bucket whose last entries just expired delivers none). */
const READY_FALLBACK_MS = 3_000;
/** Expired entries leave the in-memory set this often (the broker expires them on its own). */
const PRUNE_EVERY_MS = 60_000;
/** The console's sign-in ids: random, base64url. */
const SIGN_IN_ID = /^[A-Za-z0-9_-]{16,64}$/;

/** What a sign-in cookie says about itself, as far as sign-outs go. */
export interface SignInRef {
  sid: string;
  email: string;
  /** When it was made (ms). */
  iat: number;
}

export interface Revocations {
  /** Whether the sign-in was ended: signed out, or all of its person's sign-ins were (here or on another replica). */
  revoked(s: SignInRef): boolean;
  /** Ends a sign-in everywhere: stored before it answers, so every replica refuses the cookie from then on. */
  revoke(id: string, exp: number): Promise<void>;
  /** Ends every sign-in of a person made until now ("sign out everywhere"). */
  revokePerson(email: string): Promise<void>;
  /** The `iat` for a new sign-in of this person: after their last "sign out everywhere", whatever this clock says. */
  issuedAt(email: string): number;
  /**
   * How long a new sign-in may last, at most `wantMs`: the bucket keeps revocations for the
   * sign-in lifetime (its max_age), and is made to keep them longer first when `wantMs` needs it.
   */
  lifetime(wantMs: number): Promise<number>;
  /** Follows the bucket (every replica's sign-outs); resolves once those already stored are in. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** What the console's routes need: the check, the sign-out and the lifetime of a new sign-in. */
export type SignOuts = Pick<Revocations, 'revoked' | 'revoke' | 'revokePerson' | 'issuedAt' | 'lifetime'>;

/**
 * Console sign-outs, shared by every ingest replica through the JetStream KV bucket
 * `<prefix>-console-revoked`: one key per ended sign-in (`sid.<id>`), one per person whose
 * sign-ins all ended at a time (`person.<SHA-256 of the address>`), expired by the bucket's max_age (NATS 2.9
 * has no per-key TTL), which is the sign-in lifetime plus a clock allowance, so an entry outlives
 * the cookie it ends. Every replica watches the bucket and checks its copy on every request.
 */
export async function openRevocations(opts: { bus: Bus; lifetimeMs: number; replicas?: number; logger: Logger }): Promise<Revocations> {
  const { bus, logger } = opts;
  const name = bus.names.consoleRevokedBucket;
  const kv: KV = await new Kvm(bus.js).create(name, { history: 1, ttl: opts.lifetimeMs + CLOCK_ALLOWANCE_MS, replicas: opts.replicas ?? 1, maxValueSize: 256 });
  let maxAgeMs = 0;
  /** Brings the bucket's max_age to at least `ms` (never shorter: other replicas' sign-ins may need it). */
  const keepFor = async (ms: number) => {
    const info = await bus.jsm.streams.info(`KV_${name}`);
    const have = Math.floor((info.config.max_age ?? 0) / 1e6);
    if (have === 0 || have >= ms) return (maxAgeMs = have || Number.MAX_SAFE_INTEGER);
    await applyLimits(bus.jsm, info.config, { max_age: ms * 1e6 });
    const after = await bus.jsm.streams.info(`KV_${name}`);
    maxAgeMs = Math.floor((after.config.max_age ?? 0) / 1e6) || Number.MAX_SAFE_INTEGER;
    if (maxAgeMs < ms) logger.warn({ bucket: name, max_age_ms: maxAgeMs, wanted_ms: ms }, 'console sign-ins shortened to what the revocation bucket keeps');
    return maxAgeMs;
  };
  await keepFor(opts.lifetimeMs + CLOCK_ALLOWANCE_MS);

  /** Sign-in id → when its cookie expires (ms). */
  const ended = new Map<string, number>();
  /** Person (digest of the address) → sign-ins made up to `before` are ended; the entry lasts until `exp`. */
  const people = new Map<string, { before: number; exp: number }>();
  let watch: { stop(): void; done: Promise<void> } | undefined;
  let prune: ReturnType<typeof setInterval> | undefined;

  const remember = (key: string, value: Uint8Array | undefined) => {
    let parsed: { exp?: unknown; before?: unknown } = {};
    try {
      if (value && value.length > 0) parsed = JSON.parse(new TextDecoder().decode(value)) as typeof parsed;
    } catch {
      // Still ended: an unreadable entry keeps the sign-in refused until the bucket expires it.
    }
    const exp = typeof parsed.exp === 'number' ? parsed.exp : Date.now() + maxAgeMs;
    const [kind, id] = [key.slice(0, key.indexOf('.')), key.slice(key.indexOf('.') + 1)];
    if (kind === 'sid') ended.set(id, exp);
    else if (kind === 'person') {
      const before = typeof parsed.before === 'number' ? parsed.before : exp;
      people.set(id, { before: Math.max(before, people.get(id)?.before ?? 0), exp });
    }
  };
  const endedBefore = (email: string) => people.get(personKey(email))?.before ?? Number.NEGATIVE_INFINITY;

  return {
    revoked: (s) => ended.has(s.sid) || s.iat <= endedBefore(s.email),
    async revoke(id, exp) {
      if (!SIGN_IN_ID.test(id)) return;
      await kv.put(`sid.${id}`, JSON.stringify({ exp }));
      ended.set(id, exp);
    },
    async revokePerson(email) {
      const before = Math.max(Date.now(), endedBefore(email) + 1);
      const value = { before, exp: before + maxAgeMs };
      await kv.put(`person.${personKey(email)}`, JSON.stringify(value));
      people.set(personKey(email), value);
    },
    issuedAt: (email) => Math.max(Date.now(), endedBefore(email) + 1),
    async lifetime(wantMs) {
      if (wantMs + CLOCK_ALLOWANCE_MS > maxAgeMs) await keepFor(wantMs + CLOCK_ALLOWANCE_MS);
      return Math.min(wantMs, maxAgeMs - CLOCK_ALLOWANCE_MS);
    },
    async start() {
      const pending = (await kv.status()).streamInfo.state.messages;
      const iter = await kv.watch();
      let markReady!: () => void;
      const ready = new Promise<void>((resolve) => (markReady = resolve));
      if (pending === 0) markReady();
      const fallback = setTimeout(markReady, READY_FALLBACK_MS);
      void ready.then(() => clearTimeout(fallback));
      const done = (async () => {
        for await (const e of iter) {
          if (e.operation === 'PUT') remember(e.key, e.value);
          if (e.delta === 0) markReady();
        }
      })().catch((err: unknown) => logger.error({ err: describe(err), bucket: name }, 'console sign-out watch ended'));
      watch = { stop: () => iter.stop(), done };
      prune = setInterval(() => {
        const now = Date.now();
        for (const [id, exp] of ended) if (exp < now) ended.delete(id);
        for (const [id, p] of people) if (p.exp < now) people.delete(id);
      }, PRUNE_EVERY_MS);
      prune.unref();
      await ready;
    },
    async stop() {
      if (prune) clearInterval(prune);
      watch?.stop();
      await watch?.done;
    },
  };
}

/** A person's key in the bucket: the digest of their address, lowercased (addresses are not keys, nor logged there). */
function personKey(email: string): string {
  return createHash('sha256').update(email.trim().toLowerCase()).digest('hex');
}
