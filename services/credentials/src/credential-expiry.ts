import { create } from '@bufbuild/protobuf';
import { EXPIRY_WARNING_DAYS, type ExpiryLevel, expiryLevel, senderCertificate, type SenderConfig } from '@relay/config';
import { TestSenderResponseSchema, TestStepSchema, type TestSenderResponse, type TestStep } from '@relay/proto';
import type { Logger, RelayInstruments } from '@relay/telemetry';
import type { CredentialFacts } from './credential-status.js';
import { graphSenderTokenAuth } from './graph-auth.js';
import { smtpTokenAuth } from './imap-scope.js';
import type { TokenAuth } from './token-providers.js';

/** What runs out: a certificate's notAfter, a configured client secret's end, an idle refresh token's lapse. */
export type ExpiryKind = 'certificate' | 'client_secret' | 'refresh_token';

export interface CredentialExpiry {
  sender: string;
  kind: ExpiryKind;
  expiresAt: Date;
  /** For refresh_token: the last time the provider took it (a refresh, or the consent that issued it). */
  lastUsedAt?: Date;
}

const DAY_MS = 86_400_000;

export { EXPIRY_WARNING_DAYS, type ExpiryLevel, expiryLevel } from '@relay/config';

/**
 * How long a refresh token lives unused: Microsoft's lapse after 90 days of inactivity
 * (AADSTS700082), Google's after six months.
 */
export const REFRESH_TOKEN_IDLE_MS = { microsoft: 90 * DAY_MS, google: 183 * DAY_MS } as const;

/** How the sender's token is fetched when it signs in with a stored refresh token (delegated SMTP or Graph). */
export function refreshTokenAuth(sender: SenderConfig): TokenAuth | undefined {
  if (sender.graph) return sender.graph.flow === 'refresh_token' ? graphSenderTokenAuth(sender, sender.graph) : undefined;
  const auth = smtpTokenAuth(sender);
  return auth?.flow === 'refresh_token' ? auth : undefined;
}

/**
 * The end of the sender's client secret: client_secret_expires_at, else the date read from Graph
 * (`read`), if the sender has a client secret at all.
 */
function clientSecretExpiry(sender: SenderConfig, read?: Date): Date | undefined {
  if (sender.graph) return sender.graph.clientSecret ? (sender.graph.clientSecretExpiresAt ?? read) : undefined;
  const auth = sender.smtp?.auth;
  return auth?.type === 'oauth2' && auth.clientSecret ? auth.clientSecretExpiresAt : undefined;
}

function isoOrUndefined(iso: string | undefined): Date | undefined {
  const d = iso ? new Date(iso) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}

/**
 * What is known of when each of a sender's credentials stops working. The refresh token's lapse
 * counts from its last use (the last refresh, or the consent when it was never refreshed): unknown
 * until either happened here.
 */
export function senderExpiries(sender: SenderConfig, facts: CredentialFacts = {}, secretEndFromGraph?: Date): CredentialExpiry[] {
  const out: CredentialExpiry[] = [];
  const cert = senderCertificate(sender);
  if (cert) out.push({ sender: sender.id, kind: 'certificate', expiresAt: cert.notAfter });
  const secret = clientSecretExpiry(sender, secretEndFromGraph);
  if (secret) out.push({ sender: sender.id, kind: 'client_secret', expiresAt: secret });
  const rt = refreshTokenAuth(sender);
  const lastUsedAt = rt ? lastRefreshTokenUse(facts) : undefined;
  if (rt && lastUsedAt) {
    out.push({ sender: sender.id, kind: 'refresh_token', expiresAt: new Date(lastUsedAt.getTime() + REFRESH_TOKEN_IDLE_MS[rt.provider]), lastUsedAt });
  }
  return out;
}

/** The last time the provider took the sender's refresh token: its last refresh, or the consent. */
export function lastRefreshTokenUse(facts: CredentialFacts): Date | undefined {
  const refreshed = isoOrUndefined(facts.tokenRefreshedAt);
  const consented = isoOrUndefined(facts.consentedAt);
  if (refreshed && consented) return new Date(Math.max(refreshed.getTime(), consented.getTime()));
  return refreshed ?? consented;
}

/** Orders levels from harmless to expired. */
function severity(level: ExpiryLevel): number {
  return level === 'ok' ? 0 : level === 'expired' ? 99 : EXPIRY_WARNING_DAYS.indexOf(level) + 1;
}

const KIND_TEXT: Record<ExpiryKind, string> = { certificate: 'certificate', client_secret: 'client secret', refresh_token: 'refresh token' };

/** What the admin does before (or after) the credential runs out, with where to click. */
export function expiryRemedy(sender: SenderConfig, kind: ExpiryKind): string {
  const id = sender.id;
  const field = sender.graph ? 'graph' : 'smtp.auth';
  const clientId = sender.graph?.clientId ?? (sender.smtp?.auth.type === 'oauth2' ? sender.smtp.auth.clientId : undefined);
  const app = `Entra ID → App registrations → the app${clientId ? ` (client id ${clientId})` : ''} → Certificates & secrets`;
  if (kind === 'client_secret') {
    return `Add a new client secret in ${app} → New client secret, then give it to sender "${id}" with relay senders set-secret ${id} ${field}.client_secret (or the console's sender page, or ${field}.client_secret in relay.yaml) and set ${field}.client_secret_expires_at to its new end date.`;
  }
  if (kind === 'certificate') {
    return `Make a new certificate and upload it in ${app} → Certificates → Upload certificate, then configure it for sender "${id}" (${field}.client_certificate) and set its key with relay senders set-secret ${id} ${field}.client_certificate.private_key.`;
  }
  const auth = refreshTokenAuth(sender);
  return `Press "Authenticate with MFA" on sender "${id}"'s page in the console (or run relay senders consent ${id}) and sign in as ${auth?.user ?? 'the mailbox'}; each delivery or RELAY_TOKEN_KEEP_ALIVE keeps a used refresh token from lapsing.`;
}

function day(d: Date): string {
  return d
    .toISOString()
    .replace(/T00:00:00\.000Z$/, '')
    .replace(/\.000Z$/, 'Z');
}

function inDays(ms: number): string {
  const days = Math.floor(Math.abs(ms) / DAY_MS);
  const hours = Math.max(1, Math.floor(Math.abs(ms) / 3_600_000));
  const text = days === 0 ? `${hours} hour${hours === 1 ? '' : 's'}` : `${days} day${days === 1 ? '' : 's'}`;
  return ms < 0 ? `${text} ago` : `in ${text}`;
}

/** One expiry in words, e.g. `client secret expires 2027-06-30 (in 12 days)`. */
export function describeExpiry(e: CredentialExpiry, now: number): string {
  const left = e.expiresAt.getTime() - now;
  const verb = left <= 0 ? 'expired' : 'expires';
  if (e.kind === 'refresh_token') {
    return `refresh token last used ${day(e.lastUsedAt!)}, ${left <= 0 ? 'lapsed' : 'lapses if unused'} ${day(e.expiresAt)} (${inDays(left)})`;
  }
  return `${KIND_TEXT[e.kind]} ${verb} ${day(e.expiresAt)} (${inDays(left)})`;
}

/**
 * TestSender's "credential expiry" step: ok with the dates while they are far off, a warning
 * within 30 days, failed once one expired (with the remedy). Undefined when nothing about the
 * sender's credentials expires or is known to.
 */
export function expiryStep(
  sender: SenderConfig,
  facts: CredentialFacts,
  now: number,
  secretEndFromGraph?: Date,
): { step: TestStep; remedy: string } | undefined {
  const expiries = senderExpiries(sender, facts, secretEndFromGraph);
  if (expiries.length === 0) return undefined;
  const parts = expiries.map((e) => describeExpiry(e, now));
  if (facts.consentedAt && refreshTokenAuth(sender)) {
    const at = isoOrUndefined(facts.consentedAt);
    if (at) parts.push(`consented${facts.consentedBy ? ` by ${facts.consentedBy}` : ''} ${day(at)} (${inDays(at.getTime() - now)})`);
  }
  // The most urgent one decides the state and the remedy.
  const worst = expiries.reduce((a, b) => (a.expiresAt <= b.expiresAt ? a : b));
  const level = expiryLevel(worst.expiresAt, now);
  const remedy = level === 'ok' ? '' : expiryRemedy(sender, worst.kind);
  const detail = `${parts.join('; ')}${remedy ? `. ${remedy}` : ''}`;
  const step = create(TestStepSchema, { name: 'credential expiry', ok: level !== 'expired', warning: level !== 'ok' && level !== 'expired', detail });
  return { step, remedy };
}

/**
 * The TestSender answer with the expiry step first. An expired credential fails the test and its
 * remedy comes first: it is the cause of a token step's refusal.
 */
export function withExpiryStep(res: TestSenderResponse, expiry: { step: TestStep; remedy: string } | undefined): TestSenderResponse {
  if (!expiry) return res;
  const failed = !expiry.step.ok;
  return create(TestSenderResponseSchema, {
    ok: res.ok && !failed,
    steps: [expiry.step, ...res.steps],
    remedy: failed ? [expiry.remedy, res.remedy].filter(Boolean).join(' ') : res.remedy,
  });
}

export interface ExpiryMonitorDeps {
  senders: () => Iterable<SenderConfig>;
  /** The credential status facts of a sender (credential-status.ts). */
  facts: (sender: string) => Promise<CredentialFacts>;
  logger: Logger;
  /** Epoch ms; tests move it. */
  now?: () => number;
  /**
   * The end of a Graph sender's client secret read from its app registration (graph-secret-end.ts),
   * for senders without client_secret_expires_at; asked at most daily per sender, and again at the
   * next check when it answers undefined (no token to ask with yet).
   */
  readSecretEnd?: (sender: SenderConfig) => Promise<{ end: Date | undefined } | undefined>;
  /** Refreshes idle refresh tokens (RELAY_TOKEN_KEEP_ALIVE). */
  keepAlive?: {
    /** Refresh when the last use is older than this. */
    afterMs: number;
    /** Claims the keep-alive of a sender across replicas for ttlMs; false when another replica has it. */
    claim: (sender: string, ttlMs: number) => Promise<boolean>;
    /** Obtains a new access token with the stored refresh token. */
    refresh: (sender: string, auth: TokenAuth) => Promise<void>;
  };
}

export interface ExpiryMonitor {
  /** Reads the facts, logs warnings for thresholds newly crossed, refreshes idle tokens. */
  check(): Promise<void>;
  /** A token was obtained or a consent completed: the refresh token's clock restarts. */
  note(sender: string, facts: Partial<CredentialFacts>): void;
  /** The current expiries (for the gauge): the facts as last read or noted. */
  expiries(): CredentialExpiry[];
  /** The end of the sender's client secret as last read from Graph, if it was. */
  secretEndFromGraph(sender: string): Date | undefined;
  /** Runs check() now and then every intervalMs. */
  start(intervalMs?: number): void;
  stop(): void;
}

/** How long one replica keeps the keep-alive of a sender to itself. */
const KEEP_ALIVE_CLAIM_MS = 10 * 60_000;
/** How often a client secret's end is read from Graph again. */
const SECRET_READ_INTERVAL_MS = 86_400_000;
/** How often the expiries are checked. */
export const EXPIRY_CHECK_INTERVAL_MS = 3_600_000;

/**
 * Watches every sender's credential expiries: a `warn` line when one comes within 30, 14 and 3
 * days, an `error` line once it expired (each once per sender, kind and expiry date in this
 * process), and with keep-alive a refresh of refresh tokens idle for longer than it.
 */
export function createExpiryMonitor(deps: ExpiryMonitorDeps): ExpiryMonitor {
  const now = deps.now ?? Date.now;
  const facts = new Map<string, CredentialFacts>();
  /** Client secret ends read from Graph, and when they were asked for (by `now`). */
  const fromGraph = new Map<string, { end: Date | undefined; askedAt: number }>();
  /** The level last logged per sender and kind, for the expiry date it was logged for. */
  const logged = new Map<string, { level: ExpiryLevel; expiresAt: number }>();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const expiries = () => [...deps.senders()].flatMap((s) => senderExpiries(s, facts.get(s.id), fromGraph.get(s.id)?.end));

  async function readFromGraph(sender: SenderConfig, at: number): Promise<void> {
    const read = deps.readSecretEnd;
    if (!read || !sender.graph?.clientSecret || sender.graph.clientSecretExpiresAt) return;
    const last = fromGraph.get(sender.id);
    if (last && at - last.askedAt < SECRET_READ_INTERVAL_MS) return;
    try {
      const answer = await read(sender);
      if (answer) fromGraph.set(sender.id, { end: answer.end, askedAt: at });
    } catch (err) {
      // Not fatal: client_secret_expires_at says the same. Asked again a day later.
      fromGraph.set(sender.id, { end: last?.end, askedAt: at });
      deps.logger.info({ sender: sender.id, err: (err as Error).message }, 'client secret end not read from Graph; set client_secret_expires_at');
    }
  }

  function warn(sender: SenderConfig, e: CredentialExpiry, at: number): void {
    const key = `${e.sender}\u0000${e.kind}`;
    const level = expiryLevel(e.expiresAt, at);
    const before = logged.get(key);
    // A renewed credential (a new date) starts over.
    const last = before && before.expiresAt === e.expiresAt.getTime() ? before.level : 'ok';
    if (severity(level) <= severity(last)) return;
    logged.set(key, { level, expiresAt: e.expiresAt.getTime() });
    const fields = {
      sender: e.sender,
      kind: e.kind,
      expires_at: e.expiresAt.toISOString(),
      days_left: Math.max(0, Math.floor((e.expiresAt.getTime() - at) / DAY_MS)),
      remedy: expiryRemedy(sender, e.kind),
    };
    const text = `sender "${e.sender}": ${describeExpiry(e, at)}`;
    if (level === 'expired') deps.logger.error(fields, `credential expired: ${text}`);
    else deps.logger.warn(fields, `credential expires within ${level} days: ${text}`);
  }

  async function keepAlive(sender: SenderConfig, at: number): Promise<void> {
    const k = deps.keepAlive;
    const auth = refreshTokenAuth(sender);
    if (!k || !auth) return;
    const stale = (f: CredentialFacts | undefined) => {
      const last = f && lastRefreshTokenUse(f);
      // Never used here: nothing to keep alive (it needs a consent first, or its first delivery).
      return last !== undefined && at - last.getTime() >= k.afterMs;
    };
    if (!stale(facts.get(sender.id))) return;
    try {
      if (!(await k.claim(sender.id, KEEP_ALIVE_CLAIM_MS))) return;
      // Another replica may have refreshed it just before the claim: read again.
      const current = await deps.facts(sender.id);
      facts.set(sender.id, current);
      if (!stale(current)) return;
      await k.refresh(sender.id, auth);
      deps.logger.info({ sender: sender.id, idle_since: lastRefreshTokenUse(current)?.toISOString() }, 'refreshed an idle refresh token (keep-alive)');
    } catch (err) {
      deps.logger.warn({ sender: sender.id, err: (err as Error).message }, 'keep-alive refresh failed');
    }
  }

  async function checkOnce(): Promise<void> {
    const at = now();
    const senders = [...deps.senders()];
    const ids = new Set(senders.map((s) => s.id));
    for (const id of facts.keys()) if (!ids.has(id)) facts.delete(id);
    for (const id of fromGraph.keys()) if (!ids.has(id)) fromGraph.delete(id);
    for (const s of senders) {
      if (refreshTokenAuth(s)) {
        try {
          facts.set(s.id, await deps.facts(s.id));
        } catch (err) {
          deps.logger.warn({ sender: s.id, err: (err as Error).message }, 'credential status not read for the expiry check');
        }
        await keepAlive(s, at);
      }
      await readFromGraph(s, at);
      for (const e of senderExpiries(s, facts.get(s.id), fromGraph.get(s.id)?.end)) warn(s, e, at);
    }
  }

  const monitor: ExpiryMonitor = {
    check() {
      // One check at a time: a slow one is not overtaken by the next tick.
      running ??= checkOnce().finally(() => {
        running = undefined;
      });
      return running;
    },
    note(sender, f) {
      facts.set(sender, { ...facts.get(sender), ...f });
    },
    expiries,
    secretEndFromGraph: (sender) => fromGraph.get(sender)?.end,
    start(intervalMs = EXPIRY_CHECK_INTERVAL_MS) {
      const run = () => monitor.check().catch((err: unknown) => deps.logger.warn({ err: (err as Error).message }, 'credential expiry check failed'));
      void run();
      timer = setInterval(run, intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
  return monitor;
}

/**
 * `relay_credential_expiry_seconds{sender,kind}`: seconds until each known sender credential
 * stops working (negative once it has), computed at each collection. Returns the unregister.
 */
export function registerCredentialExpiryGauge(meter: RelayInstruments['meter'], expiries: () => CredentialExpiry[], now: () => number = Date.now): () => void {
  const gauge = meter.createObservableGauge('relay_credential_expiry_seconds', {
    description:
      'Seconds until a sender credential expires, by kind (certificate: its notAfter; client_secret: client_secret_expires_at; refresh_token: its lapse when left unused)',
    unit: 's',
  });
  const observe = (result: { observe(value: number, attributes: Record<string, string>): void }) => {
    const at = now();
    for (const e of expiries()) result.observe(Math.floor((e.expiresAt.getTime() - at) / 1000), { sender: e.sender, kind: e.kind });
  };
  gauge.addCallback(observe);
  return () => gauge.removeCallback(observe);
}
