import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError, isConfigError } from '@relay/core';
import { loadClientCertificate } from './certificate.js';
import { convertFeedback, sentCopyImap } from './feedback.js';
import { port25Refusal, RATE_PRESETS } from './presets.js';
import { formatIssues } from './issues.js';
import {
  configSchema,
  managedClientSchema,
  senderSchema,
  SMTP_POOL_DEFAULTS,
  type RawClient,
  type RawClientLimits,
  type RawConfig,
  type RawConsole,
  type RawSender,
} from './schema.js';
import { resolveSecret, UnresolvedSecret, type Secret } from './secret.js';
import { loadServiceAccount } from './service-account.js';
import type {
  ClientConfig,
  ConsoleConfig,
  ClientKey,
  ClientLimits,
  RateConfig,
  RelayConfig,
  SenderConfig,
  SmtpAuthConfig,
  ClientSmtpConfig,
  StoreLimit,
  StoreLimitsConfig,
  WebhookConfig,
} from './types.js';

type Env = Record<string, string | undefined>;

/** The shortest API key a client may have. */
export const MIN_API_KEY_LENGTH = 32;

/**
 * Which secret references a service resolves: `senders-only` (the credentials service: SMTP
 * passwords, OAuth and Graph client secrets, refresh tokens), `callers-only` (ingest: the clients'
 * API keys, which it checks), `none` (scheduler and senders), `all` (tools). The rest stay
 * UnresolvedSecret, so the service starts without their environment variables or files.
 */
export type SecretResolution = 'all' | 'senders-only' | 'callers-only' | 'none';

export interface LoadOptions {
  /** Default `all`. */
  resolveSecrets?: SecretResolution;
}

type Resolve = (ref: string, key: string) => Secret;

/** Reads, validates and converts the YAML file at `path`. Throws ConfigError naming the key. */
export function loadConfigFile(path: string, env: Env, opts: LoadOptions = {}): RelayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`RELAY_CONFIG: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  return parseConfig(text, env, path, opts);
}

/** Validates and converts YAML text. `source` names the file in errors. */
export function parseConfig(text: string, env: Env, source = 'relay.yaml', opts: LoadOptions = {}): RelayConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw new ConfigError(`${source}: not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const result = configSchema.safeParse(doc ?? {});
  if (!result.success) {
    throw new ConfigError(`${source}: ${formatIssues(result.error.issues, doc ?? {}, configSchema)}`);
  }
  const mode = opts.resolveSecrets ?? 'all';
  const resolve: Resolve = (ref, key) => resolveSecret(ref, key, env);
  const unresolved: Resolve = (ref, key) => new UnresolvedSecret(key, ref);
  const callers = mode === 'all' || mode === 'callers-only' ? resolve : unresolved;
  try {
    const config = convert(result.data, callers, mode === 'all' || mode === 'senders-only' ? resolve : unresolved);
    // What the operations API shows of relay.yaml's entries: as written, secrets left out.
    const raw = doc as { senders: unknown[]; clients: unknown[] };
    config.senders.forEach((s, i) => {
      s.spec = withoutFields(raw.senders[i], [...SENDER_SECRET_FIELDS]);
    });
    config.clients.forEach((c, i) => {
      c.spec = withoutWebhookSecrets(withoutFields(raw.clients[i], ['api_key', 'smtp.password']));
    });
    return config;
  } catch (err) {
    // Every problem names the file, as the schema's do.
    if (isConfigError(err)) throw new ConfigError(`${source}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** `callers` resolves what ingest checks callers with; `senderSecrets` everything else. */
function convert(raw: RawConfig, callers: Resolve, senderSecrets: Resolve): RelayConfig {
  const senders = raw.senders.map((s, i) => convertSender(s, `senders[${i}]`, senderSecrets));
  const ids = new Set<string>();
  senders.forEach((s, i) => {
    if (ids.has(s.id)) throw new ConfigError(`senders[${i}].id: duplicate sender id "${s.id}"`);
    ids.add(s.id);
  });
  const names = new Set<string>();
  const clients: ClientConfig[] = raw.clients.map((c, i) => {
    if (names.has(c.name)) throw new ConfigError(`clients[${i}].name: duplicate client name "${c.name}"`);
    names.add(c.name);
    c.senders.forEach((id, j) => {
      if (!ids.has(id)) throw new ConfigError(`clients[${i}].senders[${j}]: "${id}" is not a configured sender (senders: ${[...ids].join(', ')})`);
    });
    const apiKey = callers(c.api_key, `clients[${i}].api_key`);
    // A short key is a placeholder or a guessable one; neither may become a working credential.
    if (apiKey.resolved && apiKey.reveal().length < MIN_API_KEY_LENGTH) {
      throw new ConfigError(
        `clients[${i}].api_key: the key of client "${c.name}" is shorter than ${MIN_API_KEY_LENGTH} characters; make one with: openssl rand -base64 32`,
      );
    }
    return {
      name: c.name,
      apiKey,
      managedBy: 'file',
      senders: [...c.senders],
      admin: c.admin,
      limits: convertClientLimits(c.limits),
      ...(c.smtp ? { smtp: convertClientSmtp(c.smtp, `clients[${i}].smtp`, callers) } : {}),
      ...(c.webhooks ? { webhooks: convertWebhooks(c.webhooks, `clients[${i}].webhooks`, callers) } : {}),
      ...(c.suppression ? { suppression: { mode: c.suppression.mode, forMs: c.suppression.for } } : {}),
    };
  });
  const smtpUsers = new Map<string, string>();
  clients.forEach((c, i) => {
    const user = c.smtp?.username?.toLowerCase();
    if (!user) return;
    const other = smtpUsers.get(user);
    if (other) throw new ConfigError(`clients[${i}].smtp.username: "${c.smtp!.username}" is already client "${other}"'s username`);
    smtpUsers.set(user, c.name);
  });
  const keys = new Map<string, string>();
  clients.forEach((c, i) => {
    if (!c.apiKey?.resolved) return;
    const other = keys.get(c.apiKey.reveal());
    if (other) throw new ConfigError(`clients[${i}].api_key: the same key as client "${other}"; every client needs its own key`);
    keys.set(c.apiKey.reveal(), c.name);
  });
  return {
    ...(raw.console ? { console: convertConsole(raw.console, callers) } : {}),
    clients,
    senders,
    limits: {
      maxMessageBytes: raw.limits.max_message_bytes,
      heldMaxAgeMs: raw.limits.held_max_age,
      store: storeLimits(raw.limits.store),
    },
    delivery: {
      retryInitialMs: raw.delivery.retry_initial,
      retryMaxMs: raw.delivery.retry_max,
      maxAgeMs: raw.delivery.max_age,
      failedRetentionMs: raw.delivery.failed_retention,
      webhookRetryInitialMs: raw.delivery.webhook_retry_initial,
      webhookRetryMaxMs: raw.delivery.webhook_retry_max,
      webhookMaxAgeMs: raw.delivery.webhook_max_age,
    },
  };
}

/** The console's client secret is ingest's, like the callers' keys: resolved with them. */
function convertConsole(c: RawConsole, resolve: Resolve): ConsoleConfig {
  return {
    issuer: (c.issuer ?? c.authority)!.replace(/\/+$/, ''),
    clientId: c.client_id,
    clientSecret: c.client_secret === undefined ? undefined : resolve(c.client_secret, 'console.client_secret'),
    ...(c.client_secret_expires_at ? { clientSecretExpiresAt: new Date(c.client_secret_expires_at) } : {}),
    ...(c.client_certificate ? { clientCertificate: loadClientCertificate(c.client_certificate, 'console.client_certificate', 'the console', resolve) } : {}),
    admins: c.admins.map((a) => a.replace(/^.*<([^>]+)>\s*$/, '$1').toLowerCase()),
    adminGroups: [...c.admin_groups],
    contact: c.contact,
    sessionTtlMs: c.session_ttl,
  };
}

/** The fields of a sender that hold secrets, as paths in its settings. */
export const SENDER_SECRET_FIELDS = [
  'smtp.auth.password',
  'smtp.auth.client_secret',
  'smtp.auth.refresh_token',
  'smtp.auth.client_certificate.private_key',
  'smtp.auth.service_account.private_key',
  'graph.client_secret',
  'graph.client_certificate.private_key',
] as const;
export type SenderSecretField = (typeof SENDER_SECRET_FIELDS)[number];

/** The secret fields a sender's settings use: those its auth type needs, and the optional ones it may take. */
export function senderSecretFields(spec: Record<string, unknown>): { field: SenderSecretField; required: boolean }[] {
  const smtp = spec.smtp as { auth?: { type?: unknown; flow?: unknown; client_certificate?: unknown } } | undefined;
  const graph = spec.graph as { client_certificate?: unknown } | undefined;
  const out: { field: SenderSecretField; required: boolean }[] = [];
  // A certificate credential's private key takes the place of the client secret.
  if (spec.transport === 'graph')
    out.push({ field: isMapping(graph?.client_certificate) ? 'graph.client_certificate.private_key' : 'graph.client_secret', required: true });
  const auth = smtp?.auth;
  if (auth?.type === 'password') out.push({ field: 'smtp.auth.password', required: true });
  if (auth?.type === 'oauth2' && auth.flow === 'service_account') out.push({ field: 'smtp.auth.service_account.private_key', required: true });
  else if (auth?.type === 'oauth2') {
    if (isMapping(auth.client_certificate)) out.push({ field: 'smtp.auth.client_certificate.private_key', required: true });
    else out.push({ field: 'smtp.auth.client_secret', required: auth.flow === 'client_credentials' });
    out.push({ field: 'smtp.auth.refresh_token', required: false });
  }
  return out;
}

/** Reference that stands for a secret kept sealed by relay-credentials (senders managed through the API). */
export const SEALED_REF = 'sealed:';

/**
 * A sender managed through the API, from its settings (a relay.yaml `senders:` entry without
 * secrets). Each secret field it uses is a `sealed:<field>` reference that `resolve` turns into the
 * value relay-credentials keeps; `isSet(field)` says which optional ones have a value. Throws
 * ConfigError naming the field, exactly as relay.yaml's checks do.
 */
export function parseManagedSender(
  spec: unknown,
  resolve: (ref: string, key: string) => Secret,
  isSet: (field: SenderSecretField) => boolean = () => false,
): SenderConfig {
  if (!isMapping(spec)) throw new ConfigError('sender: must be a mapping of settings (a relay.yaml senders: entry)');
  // A path on the relay's hosts that every service would read: only relay.yaml may name one.
  for (const [field, instead] of [
    ['smtp.ca_file', 'ca_pem'],
    ['smtp.auth.client_certificate.certificate_file', 'certificate_pem'],
    ['smtp.auth.client_certificate.private_key_file', 'SetSenderSecret for smtp.auth.client_certificate.private_key'],
    ['graph.client_certificate.certificate_file', 'certificate_pem'],
    ['graph.client_certificate.private_key_file', 'SetSenderSecret for graph.client_certificate.private_key'],
    ['smtp.auth.service_account_file', 'service_account: { client_email } and SetSenderSecret for smtp.auth.service_account.private_key'],
    ['feedback.imap.ca_file', 'a CA the system trusts'],
  ] as const) {
    if (valueAt(spec, field) !== undefined) {
      throw new ConfigError(
        `${field}: not accepted through the API (it names a file on the relay's hosts); use ${instead}, or set it for a sender in relay.yaml`,
      );
    }
  }
  if (valueAt(spec, 'feedback.imap.auth') !== undefined) {
    throw new ConfigError("feedback.imap.auth: not accepted through the API; leave it out to use the sender's smtp.auth, or set it for a sender in relay.yaml");
  }
  for (const field of SENDER_SECRET_FIELDS) {
    if (valueAt(spec, field) !== undefined) {
      throw new ConfigError(`${field}: secrets are not accepted in a sender's settings; set it with SetSenderSecret (relay senders set-secret)`);
    }
  }
  const doc = structuredClone(spec);
  for (const { field, required } of senderSecretFields(doc)) {
    if (required || isSet(field)) setAt(doc, field, `${SEALED_REF}${field}`);
  }
  const result = senderSchema.safeParse(doc);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues, doc, senderSchema));
  try {
    const sender = convertSender(result.data, '', (ref, key) => resolve(ref, key.replace(/^\./, '')));
    return { ...sender, managedBy: 'api' };
  } catch (err) {
    // The settings are the whole document here: `.smtp.port: …` reads `smtp.port: …`.
    if (isConfigError(err)) throw new ConfigError(err.message.replace(/^\./, ''), { cause: err });
    throw err;
  }
}

/**
 * A client managed through the API, from its settings and the keys the relay made for it.
 * `webhookSecrets` maps each webhook URL whose signing secret exists (CreateWebhookSecret) to when it was made.
 */
export function parseManagedClient(
  spec: unknown,
  keys: ClientKey[],
  senders: ReadonlySet<string> | undefined,
  smtpPasswordDigest?: string,
  webhookSecrets: Readonly<Record<string, string>> = {},
): ClientConfig {
  if (isMapping(spec) && Array.isArray(spec.webhooks)) {
    spec.webhooks.forEach((w: unknown, j) => {
      for (const field of ['secret', 'previous_secret']) {
        if (isMapping(w) && w[field] !== undefined) {
          throw new ConfigError(
            `webhooks[${j}].${field}: secrets are not accepted in a client's settings; the relay makes the signing secret: run relay webhooks secret <client> <url> (CreateWebhookSecret) after this change`,
          );
        }
      }
    });
  }
  const result = managedClientSchema.safeParse(spec);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues, spec, managedClientSchema));
  const c = result.data;
  c.senders.forEach((id, j) => {
    if (senders && !senders.has(id)) throw new ConfigError(`senders[${j}]: "${id}" is not a configured sender (senders: ${[...senders].join(', ')})`);
  });
  const urls = new Set<string>();
  const webhooks = c.webhooks?.map((w, j): WebhookConfig => {
    if (urls.has(w.url)) throw new ConfigError(`webhooks[${j}].url: the same URL as an earlier webhook of this client; list all its events in one entry`);
    urls.add(w.url);
    const createdAt = Object.hasOwn(webhookSecrets, w.url) ? webhookSecrets[w.url] : undefined;
    return { url: w.url, events: [...new Set(w.events)], ...(createdAt ? { secretCreatedAt: createdAt } : {}) };
  });
  return {
    name: c.name,
    apiKey: undefined,
    keys,
    managedBy: 'api',
    senders: [...c.senders],
    admin: c.admin,
    limits: convertClientLimits(c.limits),
    ...(c.smtp
      ? {
          smtp: {
            username: c.smtp.username,
            password: undefined,
            ...(c.smtp.username && smtpPasswordDigest ? { passwordDigest: smtpPasswordDigest } : {}),
            allowIps: c.smtp.allow_ips ?? [],
          },
        }
      : {}),
    ...(webhooks ? { webhooks } : {}),
    ...(c.suppression ? { suppression: { mode: c.suppression.mode, forMs: c.suppression.for } } : {}),
  };
}

/** The smallest Standard Webhooks secret accepted, in bytes (the specification asks for 24 to 64). */
export const MIN_WEBHOOK_SECRET_BYTES = 24;
const MAX_WEBHOOK_SECRET_BYTES = 64;

function convertWebhooks(raw: NonNullable<RawClient['webhooks']>, key: string, resolve: Resolve): WebhookConfig[] {
  const urls = new Set<string>();
  return raw.map((w, j) => {
    if (urls.has(w.url)) throw new ConfigError(`${key}[${j}].url: the same URL as an earlier webhook of this client; list all its events in one entry`);
    urls.add(w.url);
    const secret = resolve(w.secret, `${key}[${j}].secret`);
    if (secret.resolved) checkWebhookSecret(secret.reveal(), `${key}[${j}].secret`);
    const previous = w.previous_secret === undefined ? undefined : resolve(w.previous_secret, `${key}[${j}].previous_secret`);
    if (previous?.resolved) checkWebhookSecret(previous.reveal(), `${key}[${j}].previous_secret`);
    return { url: w.url, secret, ...(previous ? { previousSecret: previous } : {}), events: [...new Set(w.events)] };
  });
}

/** Throws ConfigError unless `value` is a Standard Webhooks secret: `whsec_` and 24-64 bytes in base64. */
export function checkWebhookSecret(value: string, key: string): void {
  const b64 = value.startsWith('whsec_') ? value.slice(6) : undefined;
  const bytes = b64 !== undefined && /^[A-Za-z0-9+/]+={0,2}$/.test(b64) && b64.length % 4 === 0 ? Buffer.from(b64, 'base64').length : 0;
  if (bytes < MIN_WEBHOOK_SECRET_BYTES || bytes > MAX_WEBHOOK_SECRET_BYTES) {
    throw new ConfigError(
      `${key}: must be a Standard Webhooks secret, whsec_ followed by ${MIN_WEBHOOK_SECRET_BYTES}-${MAX_WEBHOOK_SECRET_BYTES} random bytes in base64; make one with: echo whsec_$(openssl rand -base64 32)`,
    );
  }
}

function withoutWebhookSecrets(spec: Record<string, unknown>): Record<string, unknown> {
  if (Array.isArray(spec.webhooks)) spec.webhooks = spec.webhooks.map((w: unknown) => (isMapping(w) ? withoutFields(w, ['secret', 'previous_secret']) : w));
  return spec;
}

function withoutFields(entry: unknown, fields: readonly string[]): Record<string, unknown> {
  if (!isMapping(entry)) return {};
  const copy = structuredClone(entry);
  for (const path of fields) {
    const keys = path.split('.');
    let v: unknown = copy;
    for (const k of keys.slice(0, -1)) v = isMapping(v) ? v[k] : undefined;
    if (isMapping(v)) delete v[keys.at(-1)!];
  }
  return copy;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function valueAt(doc: Record<string, unknown>, path: string): unknown {
  let v: unknown = doc;
  for (const k of path.split('.')) v = isMapping(v) ? v[k] : undefined;
  return v;
}

function setAt(doc: Record<string, unknown>, path: string, value: unknown) {
  const keys = path.split('.');
  let v: unknown = doc;
  for (const k of keys.slice(0, -1)) v = isMapping(v) ? v[k] : undefined;
  if (isMapping(v)) v[keys.at(-1)!] = value;
}

function convertClientLimits(l: RawClientLimits | undefined): ClientLimits {
  return {
    messagesPerSecond: l?.messages_per_second,
    bytesPerSecond: l?.bytes_per_second,
    maxStoredMessages: l?.max_stored_messages,
    maxStoredBytes: l?.max_stored_bytes,
    dailyRecipients: l?.daily_recipients,
  };
}

function storeLimits(raw: RawConfig['limits']['store']): StoreLimitsConfig {
  const one = (v: { max_messages?: number | undefined; max_bytes?: number | undefined }): StoreLimit => ({
    maxMessages: v.max_messages,
    maxBytes: v.max_bytes,
  });
  return {
    submitted: one(raw.submitted),
    held: one(raw.held),
    dispatch: one(raw.dispatch),
    status: one(raw.status),
    pacing: one(raw.pacing),
    bodies: one(raw.bodies),
    failed: one(raw.failed),
    messages: one(raw.messages),
    idempotency: one(raw.idempotency),
  };
}

function convertSender(s: RawSender, key: string, resolve: Resolve): SenderConfig {
  if (s.transport === 'smtp' && !s.smtp) throw new ConfigError(`${key}.smtp: required for transport: smtp`);
  if (s.transport === 'graph' && !s.graph) throw new ConfigError(`${key}.graph: required for transport: graph`);
  if (s.transport === 'smtp' && s.graph) throw new ConfigError(`${key}.graph: not allowed with transport: smtp (graph settings are for transport: graph)`);
  if (s.transport === 'graph' && s.smtp) throw new ConfigError(`${key}.smtp: not allowed with transport: graph (smtp settings are for transport: smtp)`);
  const smtp = s.smtp ? convertSmtp(s.smtp, `${key}.smtp`, resolve, s.id) : undefined;
  const g = s.graph;
  if (g && g.client_secret !== undefined && g.client_certificate !== undefined) {
    throw new ConfigError(`${key}.graph.client_certificate: give client_secret or client_certificate, not both`);
  }
  if (g && g.client_secret === undefined && g.client_certificate === undefined) {
    throw new ConfigError(`${key}.graph.client_secret: required (or client_certificate)`);
  }
  if (g?.client_secret_expires_at !== undefined && g.client_certificate !== undefined) {
    throw new ConfigError(`${key}.graph.client_secret_expires_at: is the expiry of client_secret; a client_certificate's expiry is its notAfter`);
  }
  const feedback = s.feedback ? convertFeedback(s.feedback, { transport: s.transport, smtpAuth: s.smtp?.auth }, key) : undefined;
  const sentCopy = sentCopyImap(s.copy_to_sent, s.transport, smtp, feedback, key);
  const internalDomains = s.internal_domains ?? (s.rate?.preset === 'microsoft365-hve' ? [addrSpec(s.from).split('@')[1]!] : undefined);
  return {
    id: s.id,
    managedBy: 'file',
    pacingKey: pacingKey(s.id, smtp, s.graph?.mailbox),
    from: s.from,
    replyTo: s.reply_to,
    transport: s.transport,
    smtp,
    graph: s.graph
      ? {
          ...(s.graph.flow === 'refresh_token' ? { flow: 'refresh_token' as const } : {}),
          tenantId: s.graph.tenant_id,
          clientId: s.graph.client_id,
          clientSecret: s.graph.client_secret === undefined ? undefined : resolve(s.graph.client_secret, `${key}.graph.client_secret`),
          ...(s.graph.client_secret_expires_at ? { clientSecretExpiresAt: new Date(s.graph.client_secret_expires_at) } : {}),
          clientCertificate: s.graph.client_certificate
            ? loadClientCertificate(s.graph.client_certificate, `${key}.graph.client_certificate`, `sender "${s.id}"`, resolve)
            : undefined,
          mailbox: s.graph.mailbox,
          authorityUrl: stripSlash(s.graph.authority_url),
          graphUrl: stripSlash(s.graph.graph_url),
          saveToSentItems: s.graph.save_to_sent_items,
        }
      : undefined,
    // Graph senders are paced within Microsoft's Graph limits unless their rate: says otherwise.
    ...(s.smtp_aliases ? { smtpAliases: s.smtp_aliases.map(addrSpec) } : {}),
    ...(s.owners ? { owners: s.owners.map(addrSpec) } : {}),
    ...(internalDomains ? { internalDomains: [...new Set(internalDomains)] } : {}),
    ...(feedback ? { feedback } : {}),
    ...(sentCopy ? { sentCopy: { imap: sentCopy } } : {}),
    rate: s.rate ? convertRate(s.rate, `${key}.rate`) : s.transport === 'graph' ? convertRate({ preset: 'microsoft365-graph' }, `${key}.rate`) : undefined,
  };
}

/** The account a sender's mail counts against at the provider (see SenderConfig.pacingKey). */
function pacingKey(id: string, smtp: SenderConfig['smtp'], graphMailbox: string | undefined): string {
  let account: string | undefined;
  if (graphMailbox) account = `graph:${graphMailbox.toLowerCase()}`;
  else if (smtp && smtp.auth.type !== 'none') account = `smtp:${smtp.host.toLowerCase()}:${smtp.auth.user.toLowerCase()}`;
  return account ? `mailbox-${createHash('sha256').update(account).digest('hex').slice(0, 20)}` : id;
}

function convertSmtp(s: NonNullable<RawSender['smtp']>, key: string, resolve: Resolve, sender: string): NonNullable<SenderConfig['smtp']> {
  const refusal = port25Refusal(s.host, s.port);
  if (refusal) throw new ConfigError(`${key}.port: ${refusal}`);
  if (s.ca_file && s.ca_pem) throw new ConfigError(`${key}.ca_pem: give ca_file or ca_pem, not both`);
  let ca: string | undefined = s.ca_pem;
  if (s.ca_file) {
    try {
      ca = readFileSync(s.ca_file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${key}.ca_file: cannot read ${s.ca_file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`${key}.ca_file: ${s.ca_file} holds no PEM certificate`);
  }
  return {
    host: s.host,
    port: s.port,
    security: s.security,
    servername: s.servername,
    caFile: s.ca_file,
    ca,
    auth: convertAuth(s.auth, `${key}.auth`, resolve, sender),
    pool: { maxConnections: s.pool?.max_connections ?? SMTP_POOL_DEFAULTS.maxConnections, maxMessages: s.pool?.max_messages ?? SMTP_POOL_DEFAULTS.maxMessages },
    timeouts: {
      connectMs: s.timeouts?.connect ?? 30_000,
      greetingMs: s.timeouts?.greeting ?? 30_000,
      socketMs: s.timeouts?.socket ?? 300_000,
    },
  };
}

function convertAuth(a: NonNullable<RawSender['smtp']>['auth'], key: string, resolve: Resolve, sender: string): SmtpAuthConfig {
  if (!a || a.type === 'none') return { type: 'none' };
  if (a.type === 'password') return { type: 'password', user: a.user, password: resolve(a.password, `${key}.password`) };
  if (a.flow === 'service_account' || a.service_account || a.service_account_file) return convertServiceAccountAuth(a, key, resolve);
  if (a.client_id === undefined) throw new ConfigError(`${key}.client_id: required`);
  if (a.provider === 'microsoft' && !a.tenant_id) throw new ConfigError(`${key}.tenant_id: required for provider: microsoft`);
  if (a.flow === 'client_credentials' && a.provider !== 'microsoft') {
    throw new ConfigError(`${key}.flow: client_credentials is only available with provider: microsoft (Google needs a refresh token)`);
  }
  if (a.client_certificate && a.provider !== 'microsoft') {
    throw new ConfigError(`${key}.client_certificate: only available with provider: microsoft (Entra ID certificate credentials)`);
  }
  if (a.client_certificate && a.client_secret) throw new ConfigError(`${key}.client_certificate: give client_secret or client_certificate, not both`);
  if (a.client_secret_expires_at !== undefined && a.client_certificate) {
    throw new ConfigError(`${key}.client_secret_expires_at: is the expiry of client_secret; a client_certificate's expiry is its notAfter`);
  }
  if (a.flow === 'client_credentials' && !a.client_secret && !a.client_certificate) {
    throw new ConfigError(`${key}.client_secret: required for flow: client_credentials (or client_certificate)`);
  }
  return {
    type: 'oauth2',
    provider: a.provider,
    flow: a.flow,
    tenantId: a.tenant_id,
    clientId: a.client_id,
    clientSecret: a.client_secret ? resolve(a.client_secret, `${key}.client_secret`) : undefined,
    ...(a.client_secret_expires_at ? { clientSecretExpiresAt: new Date(a.client_secret_expires_at) } : {}),
    clientCertificate: a.client_certificate
      ? loadClientCertificate(a.client_certificate, `${key}.client_certificate`, `sender "${sender}"`, resolve)
      : undefined,
    user: a.user,
    refreshToken: a.refresh_token ? resolve(a.refresh_token, `${key}.refresh_token`) : undefined,
    authorityUrl: a.authority_url ? stripSlash(a.authority_url) : undefined,
    tokenUrl: a.token_url,
  };
}

type RawOAuth2Auth = Extract<NonNullable<NonNullable<RawSender['smtp']>['auth']>, { type: 'oauth2' }>;

/** Google domain-wide delegation: a service account's key signs a JWT naming the mailbox (flow: service_account). */
function convertServiceAccountAuth(a: RawOAuth2Auth, key: string, resolve: Resolve): SmtpAuthConfig {
  if (a.flow !== 'service_account') {
    const given = a.service_account ? 'service_account' : 'service_account_file';
    throw new ConfigError(`${key}.${given}: only used with flow: service_account (add flow: service_account, or remove ${given})`);
  }
  if (a.provider !== 'google') {
    throw new ConfigError(`${key}.flow: service_account is only available with provider: google (Microsoft apps use client_credentials)`);
  }
  if (a.service_account && a.service_account_file) {
    throw new ConfigError(`${key}.service_account_file: give service_account or service_account_file, not both`);
  }
  if (!a.service_account && !a.service_account_file) {
    throw new ConfigError(`${key}.service_account: required for flow: service_account (client_email and private_key), or service_account_file`);
  }
  for (const field of ['client_secret', 'client_certificate', 'refresh_token', 'tenant_id'] as const) {
    if (a[field] !== undefined) throw new ConfigError(`${key}.${field}: not used with flow: service_account (the service account's key signs in)`);
  }
  const { serviceAccount, clientId } = loadServiceAccount(a, key, resolve);
  return {
    type: 'oauth2',
    provider: 'google',
    flow: 'service_account',
    tenantId: undefined,
    clientId,
    clientSecret: undefined,
    user: a.user,
    refreshToken: undefined,
    serviceAccount,
    authorityUrl: undefined,
    tokenUrl: a.token_url,
  };
}

function convertRate(r: NonNullable<RawSender['rate']>, key: string): RateConfig {
  const p: Partial<Record<string, number>> = r.preset ? RATE_PRESETS[r.preset] : {};
  if (!r.preset && (r.batch_size === undefined) !== (r.interval === undefined)) {
    throw new ConfigError(
      `${key}.${r.batch_size === undefined ? 'batch_size' : 'interval'}: required with ${r.batch_size === undefined ? 'interval' : 'batch_size'} (messages per relay interval)`,
    );
  }
  return {
    preset: r.preset,
    batchSize: r.batch_size ?? p.batchSize,
    intervalMs: r.interval ?? p.intervalMs,
    dailyRecipients: r.daily_recipients ?? p.dailyRecipients,
    dailyMessages: r.daily_messages ?? p.dailyMessages,
    maxRecipientsPerMessage: r.max_recipients_per_message ?? p.maxRecipientsPerMessage,
    maxMessageBytes: r.max_message_bytes ?? p.maxMessageBytes,
    maxConcurrent: r.max_concurrent ?? p.maxConcurrent,
    dailyWindowMs: r.daily_window ?? 86_400_000,
  };
}

function convertClientSmtp(s: NonNullable<RawConfig['clients'][number]['smtp']>, key: string, resolve: Resolve): ClientSmtpConfig {
  return {
    username: s.username,
    password: s.password !== undefined ? resolve(s.password, `${key}.password`) : undefined,
    allowIps: s.allow_ips ?? [],
  };
}

/** The bare, lowercased address of `Name <local@host>` or `local@host`. */
export function addrSpec(mailbox: string): string {
  return mailbox
    .replace(/^.*<([^>]+)>\s*$/, '$1')
    .trim()
    .toLowerCase();
}

function stripSlash(url: string): string {
  return url.replace(/\/+$/, '');
}
