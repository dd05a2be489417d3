import { createHash, randomBytes } from 'node:crypto';
import { create, type JsonObject } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Metadata } from '@grpc/grpc-js';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Bus } from '@relay/bus';
import {
  parseManagedClient,
  checkCertificateKey,
  checkServiceAccountKey,
  parseManagedSender,
  SENDER_SECRET_FIELDS,
  senderSecretFields,
  UnresolvedSecret,
  type ClientConfig,
  type SenderSecretField,
} from '@relay/config';
import { ErrorCode, isConfigError, RelayError } from '@relay/core';
import {
  ApiKeyInfoSchema,
  ClientSchema,
  CreateApiKeyResponseSchema,
  CreateSmtpPasswordResponseSchema,
  CreateWebhookSecretResponseSchema,
  DeleteSenderResponseSchema,
  GetSenderResponseSchema,
  ListClientsResponseSchema,
  ListSendersResponseSchema,
  PutClientResponseSchema,
  PutSenderResponseSchema,
  RevokeApiKeyResponseSchema,
  SecretStatusSchema,
  SenderSchema,
  SetSenderSecretResponseSchema,
  WebhookSecretInfoSchema,
  type ApiKeyInfo,
  type Client,
  type CreateApiKeyRequest,
  type CreateSmtpPasswordRequest,
  type CreateWebhookSecretRequest,
  type DeleteSenderRequest,
  type GetSenderRequest,
  type ListClientsRequest,
  type ListSendersRequest,
  type PutClientRequest,
  type PutSenderRequest,
  type RevokeApiKeyRequest,
  type SecretStatus,
  type Sender,
  type SetSenderSecretRequest,
} from '@relay/proto';
import { MAX_RECORD_BYTES, REGISTRY_KEY, type ClientRecord, type LiveConfig, type SenderRecord, type StoredKey, type Versioned } from '@relay/registry';
import { requireAdmin, type Authenticator } from './auth.js';
import { digest as smtpDigest } from './smtp-door/gate.js';
import type { AdminForward } from './credentials-forward.js';

export interface AdminRegistryContext {
  bus: Bus;
  logger?: { warn(obj: object, msg: string): void };
  auth: Authenticator;
  live: LiveConfig;
  credentials: Pick<AdminForward, 'setSenderSecret' | 'deleteSenderSecrets' | 'credentialStatus' | 'createWebhookSecret'>;
}

type Call<Req> = { metadata: Metadata; request: Req };

const PAGE = { default: 100, max: 1_000 };
/** Keys a client may hold at once (a rotation's overlap needs two). */
export const MAX_KEYS_PER_CLIENT = 10;
const MAX_SECRET_BYTES = 16 * 1024;
/** How long a replaced webhook secret may keep signing (CreateWebhookSecret's keep_previous_seconds). */
const MAX_KEEP_PREVIOUS_SECONDS = 30 * 86_400;
/** How long a change waits to be in force on this ingest before the call answers. */
const APPLY_WAIT_MS = 5_000;

/** AdminService's registry calls: senders, clients and their keys, managed at runtime. */
export function createAdminRegistryHandlers(ctx: AdminRegistryContext) {
  const admin = (call: Call<unknown>): ClientConfig => requireAdmin(ctx.auth, call.metadata);
  const config = () => ctx.live.current();
  const fileSender = (id: string) => config().senders.find((s) => s.id === id && s.managedBy !== 'api');
  const fileClient = (name: string) => config().clients.find((c) => c.name === name && c.managedBy !== 'api');

  function senderView(id: string): Sender | undefined {
    const file = fileSender(id);
    if (file) {
      const spec = (file.spec ?? {}) as JsonObject;
      return create(SenderSchema, {
        id,
        spec,
        managedBy: 'file',
        etag: '',
        owners: file.owners ?? [],
        secrets: senderSecretFields(spec).map(({ field }) => create(SecretStatusSchema, { field, set: true, setBy: 'relay.yaml' })),
      });
    }
    const rec = ctx.live.senderRecords().get(id);
    return rec ? managedSenderView(id, rec) : undefined;
  }

  function clientView(name: string): Client | undefined {
    const file = fileClient(name);
    if (file) return create(ClientSchema, { name, spec: (file.spec ?? {}) as JsonObject, managedBy: 'file', etag: '' });
    const rec = ctx.live.clientRecords().get(name);
    return rec ? managedClientView(name, rec) : undefined;
  }

  /** The registry entry after a write: waits (briefly) until this ingest has it in force. */
  async function applied<T>(records: () => ReadonlyMap<string, Versioned<T>>, key: string, revision: number, deleted = false) {
    const until = Date.now() + APPLY_WAIT_MS;
    while (Date.now() < until) {
      const rec = records().get(key);
      if (deleted ? !rec || rec.revision > revision : rec && rec.revision >= revision) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  return {
    async listSenders(call: Call<ListSendersRequest>) {
      admin(call);
      const ids = new Set([...config().senders.map((s) => s.id), ...ctx.live.senderRecords().keys()]);
      const { items, next } = page([...ids].sort(), call.request.pageSize, call.request.pageToken);
      return create(ListSendersResponseSchema, { senders: items.map((id) => senderView(id)!).filter(Boolean), nextPageToken: next });
    },

    async getSender(call: Call<GetSenderRequest>) {
      admin(call);
      const sender = senderView(requireId(call.request.id, 'id'));
      if (!sender) throw new RelayError(ErrorCode.NotFound, `sender "${call.request.id}" does not exist`);
      // The sender's settings stand on their own: without the credentials service the answer has no status.
      const credential = await ctx.credentials.credentialStatus(sender.id).catch((err: unknown) => {
        ctx.logger?.warn({ sender: sender.id, err: (err as Error).message }, 'credential status not read');
        return undefined;
      });
      return create(GetSenderResponseSchema, { sender, ...(credential ? { credential } : {}) });
    },

    async putSender(call: Call<PutSenderRequest>) {
      const who = admin(call);
      const input = call.request.sender;
      if (!input) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required');
      const id = requireId(input.id, 'sender.id');
      if (fileSender(id)) throw new RelayError(ErrorCode.FailedPrecondition, `sender "${id}" is defined in relay.yaml (managed_by: file); change it there`);
      const spec = specOf(input.spec, 'id', id, 'sender');
      if (input.owners.length > 0 && spec.owners === undefined) spec.owners = [...input.owners];
      // The version being changed, from the registry itself (this ingest's copy may lag another's write).
      const old = input.etag ? await current<SenderRecord>(ctx.live.store.senders, id, 'sender', input.etag) : undefined;
      // Secrets go only where they were set for: a sender that now signs in elsewhere starts without them.
      const moved = old !== undefined && signInTarget(old.value.spec) !== signInTarget(spec);
      const secrets = moved || !old ? {} : withoutStaleKeys(old.value.spec, spec, old.value.secrets);
      // The same checks as relay.yaml's, with the field's name.
      invalidIfThrows(() =>
        parseManagedSender(
          { ...spec, id },
          (ref, key) => new UnresolvedSecret(key, ref),
          (f) => secrets[f] !== undefined,
        ),
      );
      const record: SenderRecord = { spec, secrets, updated_at: new Date().toISOString(), updated_by: who.name };
      if (call.request.validateOnly) {
        // What the write would answer, short of writing: an update's version was checked above.
        if (!input.etag && (await exists(ctx.live.store.senders, id)))
          throw new RelayError(ErrorCode.AlreadyExists, `sender "${id}" already exists; pass its etag to change it`);
        const view = managedSenderView(id, { value: record, revision: old?.revision ?? 0 });
        view.etag = input.etag;
        return create(PutSenderResponseSchema, { sender: view, created: !input.etag });
      }
      const revision = await write(ctx.live.store.senders, id, record, input.etag, 'sender');
      // The record no longer lists them, so no service uses them; removing them is housekeeping.
      if (moved)
        await ctx.credentials.deleteSenderSecrets(id).catch((err: unknown) => ctx.logger?.warn({ sender: id, err: String(err) }, 'old secrets not removed'));
      await applied(ctx.live.senderRecords, id, revision);
      return create(PutSenderResponseSchema, { sender: managedSenderView(id, { value: record, revision }), created: !input.etag });
    },

    async deleteSender(call: Call<DeleteSenderRequest>) {
      admin(call);
      const id = requireId(call.request.id, 'id');
      if (fileSender(id)) throw new RelayError(ErrorCode.FailedPrecondition, `sender "${id}" is defined in relay.yaml (managed_by: file); remove it there`);
      const rec = ctx.live.senderRecords().get(id);
      if (!rec) throw new RelayError(ErrorCode.NotFound, `sender "${id}" does not exist`);
      if (!call.request.force) {
        const queued = await queuedFor(ctx.bus, id);
        if (queued > 0) {
          throw new RelayError(
            ErrorCode.FailedPrecondition,
            `${queued} message(s) are queued for sender "${id}"; let them go out, cancel them (relay messages cancel --sender ${id}), or delete with force (they then wait until a sender "${id}" exists again)`,
          );
        }
      }
      const revision = call.request.etag ? etagRevision(call.request.etag) : rec.revision;
      try {
        await ctx.live.store.senders.delete(id, { previousSeq: revision });
      } catch (err) {
        throw conflict(err, `sender "${id}" changed since etag ${revision}; get it again`);
      }
      await ctx.credentials.deleteSenderSecrets(id).catch(() => {
        // The secrets stay sealed in relay-credentials; a sender made with this id later replaces them.
      });
      await applied(ctx.live.senderRecords, id, revision, true);
      return create(DeleteSenderResponseSchema, {});
    },

    async setSenderSecret(call: Call<SetSenderSecretRequest>) {
      const who = admin(call);
      const id = requireId(call.request.id, 'id');
      if (fileSender(id)) {
        throw new RelayError(
          ErrorCode.FailedPrecondition,
          `sender "${id}" is defined in relay.yaml (managed_by: file); its secrets come from there (env: or file:)`,
        );
      }
      const field = call.request.field as SenderSecretField;
      const value = call.request.value;
      let target = '';
      for (let attempt = 0; ; attempt++) {
        const rec = ctx.live.senderRecords().get(id) ?? (await readRecord<SenderRecord>(ctx.live.store.senders, id));
        if (!rec) throw new RelayError(ErrorCode.NotFound, `sender "${id}" does not exist`);
        const fields = senderSecretFields(rec.value.spec).map((f) => f.field);
        if (!fields.includes(field)) {
          const known = (SENDER_SECRET_FIELDS as readonly string[]).includes(field);
          throw new RelayError(
            ErrorCode.InvalidArgument,
            `field: ${known ? `sender "${id}" does not use ${field}` : `"${field}" is not a secret field`} (its secret fields: ${fields.join(', ') || 'none'})`,
          );
        }
        if (!value) throw new RelayError(ErrorCode.InvalidArgument, 'value: required');
        if (Buffer.byteLength(value) > MAX_SECRET_BYTES) throw new RelayError(ErrorCode.InvalidArgument, `value: longer than ${MAX_SECRET_BYTES} bytes`);
        // A certificate's key must be that certificate's: refused now rather than leaving the sender unusable.
        invalidIfThrows(() => checkCertificateKey(rec.value.spec, id, field, value));
        invalidIfThrows(() => checkServiceAccountKey(field, value));
        if (attempt === 0) {
          target = signInTarget(rec.value.spec);
          await ctx.credentials.setSenderSecret(id, field, value);
        } else if (signInTarget(rec.value.spec) !== target) {
          throw new RelayError(ErrorCode.Aborted, `sender "${id}" was pointed elsewhere while its secret was set; set it again`);
        }
        const meta = { set_at: new Date().toISOString(), set_by: who.name };
        const record: SenderRecord = { ...rec.value, secrets: { ...rec.value.secrets, [field]: meta } };
        try {
          const revision = await ctx.live.store.senders.update(id, JSON.stringify(record), rec.revision);
          await applied(ctx.live.senderRecords, id, revision);
          return create(SetSenderSecretResponseSchema, { secret: secretStatus(field, meta) });
        } catch (err) {
          // Another change came between: record "set" on top of it.
          if (!isWrongSequence(err) || attempt >= 4) throw conflict(err, `sender "${id}" is being changed; try again`);
        }
      }
    },

    async listClients(call: Call<ListClientsRequest>) {
      admin(call);
      const names = new Set([...config().clients.map((c) => c.name), ...ctx.live.clientRecords().keys()]);
      const { items, next } = page([...names].sort(), call.request.pageSize, call.request.pageToken);
      return create(ListClientsResponseSchema, { clients: items.map((n) => clientView(n)!).filter(Boolean), nextPageToken: next });
    },

    async putClient(call: Call<PutClientRequest>) {
      const who = admin(call);
      const input = call.request.client;
      if (!input) throw new RelayError(ErrorCode.InvalidArgument, 'client: required');
      const name = requireId(input.name, 'client.name');
      if (fileClient(name)) throw new RelayError(ErrorCode.FailedPrecondition, `client "${name}" is defined in relay.yaml (managed_by: file); change it there`);
      const spec = specOf(input.spec, 'name', name, 'client');
      const senders = new Set([...config().senders.map((s) => s.id), ...ctx.live.senderRecords().keys()]);
      invalidIfThrows(() => parseManagedClient({ ...spec, name }, [], senders));
      const old = input.etag ? await current<ClientRecord>(ctx.live.store.clients, name, 'client', input.etag) : undefined;
      const username = smtpUsername(spec);
      if (username) {
        const other = config().clients.find((c) => c.name !== name && c.smtp?.username?.toLowerCase() === username.toLowerCase());
        if (other) throw new RelayError(ErrorCode.AlreadyExists, `smtp.username: "${username}" is already client "${other.name}"'s username`);
      }
      // A password made for another username does not carry over to this one.
      const password = old?.value.smtp_password?.username === username ? old?.value.smtp_password : undefined;
      // A webhook keeps its secret while its URL stays; a new URL needs its own (CreateWebhookSecret).
      const urls = new Set(webhookUrls(spec));
      const hookSecrets = Object.fromEntries(Object.entries(old?.value.webhook_secrets ?? {}).filter(([url]) => urls.has(url)));
      const record: ClientRecord = {
        spec,
        keys: old?.value.keys ?? [],
        ...(password ? { smtp_password: password } : {}),
        ...(Object.keys(hookSecrets).length > 0 ? { webhook_secrets: hookSecrets } : {}),
        updated_at: new Date().toISOString(),
        updated_by: who.name,
      };
      const revision = await write(ctx.live.store.clients, name, record, input.etag, 'client');
      await applied(ctx.live.clientRecords, name, revision);
      return create(PutClientResponseSchema, { client: managedClientView(name, { value: record, revision }), created: !input.etag });
    },

    async createApiKey(call: Call<CreateApiKeyRequest>) {
      const who = admin(call);
      const name = requireId(call.request.client, 'client');
      if (fileClient(name)) {
        throw new RelayError(ErrorCode.FailedPrecondition, `client "${name}" is defined in relay.yaml (managed_by: file); its key is its api_key there`);
      }
      const apiKey = `rk_${randomBytes(32).toString('base64url')}`;
      const key: StoredKey = {
        id: randomBytes(6).toString('hex'),
        digest: createHash('sha256').update(apiKey).digest('hex'),
        created_at: new Date().toISOString(),
        created_by: who.name,
      };
      const overlap = call.request.expireOthersAfterSeconds;
      const revision = await modify<ClientRecord>(ctx.live.store.clients, name, 'client', (rec) => {
        const now = Date.now();
        let keys = rec.keys.filter((k) => !k.expires_at || Date.parse(k.expires_at) > now);
        if (overlap !== undefined) {
          const end = new Date(now + overlap * 1000).toISOString();
          keys = keys.map((k) => (k.expires_at && k.expires_at < end ? k : { ...k, expires_at: end }));
        }
        if (keys.length >= MAX_KEYS_PER_CLIENT) {
          throw new RelayError(ErrorCode.FailedPrecondition, `client "${name}" has ${keys.length} keys, the most it may hold; revoke one first`);
        }
        return { ...rec, keys: [...keys, key], updated_at: key.created_at, updated_by: who.name };
      });
      await applied(ctx.live.clientRecords, name, revision);
      return create(CreateApiKeyResponseSchema, { key: keyInfo(key), apiKey });
    },

    async createSmtpPassword(call: Call<CreateSmtpPasswordRequest>) {
      const who = admin(call);
      const name = requireId(call.request.client, 'client');
      if (fileClient(name)) {
        throw new RelayError(ErrorCode.FailedPrecondition, `client "${name}" is defined in relay.yaml (managed_by: file); its password is smtp.password there`);
      }
      const password = randomBytes(24).toString('base64url');
      let username = '';
      const revision = await modify<ClientRecord>(ctx.live.store.clients, name, 'client', (rec) => {
        username = smtpUsername(rec.spec) ?? '';
        if (!username) throw new RelayError(ErrorCode.FailedPrecondition, `client "${name}" has no smtp.username; set one with PutClient first`);
        const at = new Date().toISOString();
        return {
          ...rec,
          smtp_password: { digest: smtpDigest(username, password).toString('hex'), username, created_at: at, created_by: who.name },
          updated_at: at,
          updated_by: who.name,
        };
      });
      await applied(ctx.live.clientRecords, name, revision);
      return create(CreateSmtpPasswordResponseSchema, { username, password });
    },

    async createWebhookSecret(call: Call<CreateWebhookSecretRequest>) {
      const who = admin(call);
      const name = requireId(call.request.client, 'client');
      if (fileClient(name)) {
        throw new RelayError(
          ErrorCode.FailedPrecondition,
          `client "${name}" is defined in relay.yaml (managed_by: file); its webhook secrets are webhooks[].secret there`,
        );
      }
      const url = call.request.url.trim();
      if (!url) throw new RelayError(ErrorCode.InvalidArgument, "url: required (the webhook's url, as in the client's spec)");
      if (url.length > 2_048) throw new RelayError(ErrorCode.InvalidArgument, 'url: at most 2048 characters');
      const keep = call.request.keepPreviousSeconds;
      if (keep !== undefined && keep > MAX_KEEP_PREVIOUS_SECONDS) {
        throw new RelayError(ErrorCode.InvalidArgument, `keep_previous_seconds: at most ${MAX_KEEP_PREVIOUS_SECONDS} (30 days)`);
      }
      const rec = await readRecord<ClientRecord>(ctx.live.store.clients, name).catch((err: unknown) => {
        throw conflict(err, '');
      });
      if (!rec) throw new RelayError(ErrorCode.NotFound, `client "${name}" does not exist`);
      const urls = webhookUrls(rec.value.spec);
      if (!urls.includes(url)) {
        throw new RelayError(
          ErrorCode.NotFound,
          `client "${name}" has no webhook with url ${url} (its webhooks: ${urls.join(', ') || 'none'}); add it with PutClient (relay clients apply) first`,
        );
      }
      // Made and sealed by relay-credentials, which alone signs with it; the registry records that it exists.
      const made = await ctx.credentials.createWebhookSecret(name, url, keep);
      const at = made.createdAt ? timestampDate(made.createdAt).toISOString() : new Date().toISOString();
      const previousUntil = made.previousUntil ? timestampDate(made.previousUntil).toISOString() : undefined;
      const revision = await modify<ClientRecord>(ctx.live.store.clients, name, 'client', (r) => ({
        ...r,
        webhook_secrets: { ...r.webhook_secrets, [url]: { created_at: at, created_by: who.name, ...(previousUntil ? { previous_until: previousUntil } : {}) } },
        updated_at: at,
        updated_by: who.name,
      }));
      await applied(ctx.live.clientRecords, name, revision);
      return create(CreateWebhookSecretResponseSchema, made);
    },

    async revokeApiKey(call: Call<RevokeApiKeyRequest>) {
      const who = admin(call);
      const name = requireId(call.request.client, 'client');
      if (fileClient(name))
        throw new RelayError(ErrorCode.FailedPrecondition, `client "${name}" is defined in relay.yaml (managed_by: file); change its api_key there`);
      const revision = await modify<ClientRecord>(ctx.live.store.clients, name, 'client', (rec) => {
        if (!rec.keys.some((k) => k.id === call.request.keyId)) {
          throw new RelayError(
            ErrorCode.NotFound,
            `client "${name}" has no key "${call.request.keyId}" (its keys: ${rec.keys.map((k) => k.id).join(', ') || 'none'})`,
          );
        }
        return { ...rec, keys: rec.keys.filter((k) => k.id !== call.request.keyId), updated_at: new Date().toISOString(), updated_by: who.name };
      });
      await applied(ctx.live.clientRecords, name, revision);
      return create(RevokeApiKeyResponseSchema, {});
    },
  };
}

/** A certificate's private key set for another certificate does not fit the new one: it must be set again. */
function withoutStaleKeys(before: Record<string, unknown>, after: Record<string, unknown>, secrets: SenderRecord['secrets']): SenderRecord['secrets'] {
  const pemOf = (spec: Record<string, unknown>, path: string[]) =>
    path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), spec);
  const out = { ...secrets };
  for (const field of ['smtp.auth.client_certificate.private_key', 'graph.client_certificate.private_key'] as const) {
    const path = [...field.split('.').slice(0, -1), 'certificate_pem'];
    if (pemOf(before, path) !== pemOf(after, path)) delete out[field];
  }
  return out;
}

/** Where a sender's secrets are sent: its server or identity platform, app and account. */
function signInTarget(spec: Record<string, unknown>): string {
  const smtp = (spec.smtp ?? {}) as Record<string, unknown>;
  const auth = (smtp.auth ?? {}) as Record<string, unknown>;
  const graph = (spec.graph ?? {}) as Record<string, unknown>;
  return JSON.stringify([
    spec.transport,
    smtp.host,
    auth.type,
    auth.provider,
    auth.tenant_id,
    auth.client_id,
    auth.user,
    auth.authority_url,
    auth.token_url,
    (auth.service_account as Record<string, unknown> | undefined)?.client_email,
    graph.tenant_id,
    graph.client_id,
    graph.mailbox,
    graph.authority_url,
    graph.graph_url,
  ]);
}

function managedSenderView(id: string, rec: Versioned<SenderRecord>): Sender {
  const spec = rec.value.spec;
  return create(SenderSchema, {
    id,
    spec: spec as JsonObject,
    managedBy: 'api',
    etag: String(rec.revision),
    owners: Array.isArray(spec.owners) ? spec.owners.map(String) : [],
    secrets: senderSecretFields(spec).map(({ field }) => secretStatus(field, rec.value.secrets[field])),
    updatedAt: timestampFromDate(new Date(rec.value.updated_at)),
    updatedBy: rec.value.updated_by,
  });
}

function managedClientView(name: string, rec: Versioned<ClientRecord>): Client {
  return create(ClientSchema, {
    name,
    spec: rec.value.spec as JsonObject,
    managedBy: 'api',
    etag: String(rec.revision),
    apiKeys: rec.value.keys.map(keyInfo),
    webhookSecrets: Object.entries(rec.value.webhook_secrets ?? {}).map(([url, m]) =>
      create(WebhookSecretInfoSchema, {
        url,
        createdAt: timestampFromDate(new Date(m.created_at)),
        createdBy: m.created_by,
        ...(m.previous_until ? { previousUntil: timestampFromDate(new Date(m.previous_until)) } : {}),
      }),
    ),
    updatedAt: timestampFromDate(new Date(rec.value.updated_at)),
    updatedBy: rec.value.updated_by,
  });
}

function keyInfo(k: StoredKey): ApiKeyInfo {
  return create(ApiKeyInfoSchema, {
    id: k.id,
    createdAt: timestampFromDate(new Date(k.created_at)),
    createdBy: k.created_by,
    ...(k.expires_at ? { expiresAt: timestampFromDate(new Date(k.expires_at)) } : {}),
  });
}

function secretStatus(field: string, meta: { set_at: string; set_by: string } | undefined): SecretStatus {
  return create(SecretStatusSchema, meta ? { field, set: true, setAt: timestampFromDate(new Date(meta.set_at)), setBy: meta.set_by } : { field, set: false });
}

/** The URLs of a client's webhooks as its settings give them (trimmed, as the settings' check reads them). */
function webhookUrls(spec: Record<string, unknown>): string[] {
  const hooks = Array.isArray(spec.webhooks) ? (spec.webhooks as unknown[]) : [];
  return hooks.flatMap((w) => {
    const url = typeof w === 'object' && w !== null ? (w as { url?: unknown }).url : undefined;
    return typeof url === 'string' ? [url.trim()] : [];
  });
}

function smtpUsername(spec: Record<string, unknown>): string | undefined {
  const smtp = spec.smtp as { username?: unknown } | undefined;
  return typeof smtp?.username === 'string' ? smtp.username : undefined;
}

function requireId(v: string, key: string): string {
  if (!v) throw new RelayError(ErrorCode.InvalidArgument, `${key}: required`);
  if (!REGISTRY_KEY.test(v)) throw new RelayError(ErrorCode.InvalidArgument, `${key}: must be 1-64 letters, digits, "-" or "_"`);
  return v;
}

/** The settings of a PutSender/PutClient: an object, its id key (if given) the same as the call's, bounded. */
function specOf(spec: JsonObject | undefined, idKey: string, id: string, what: string): Record<string, unknown> {
  if (!spec) throw new RelayError(ErrorCode.InvalidArgument, `${what}.spec: required (the settings, as in relay.yaml)`);
  const { [idKey]: inner, ...rest } = spec;
  if (inner !== undefined && inner !== id)
    throw new RelayError(ErrorCode.InvalidArgument, `${what}.spec.${idKey}: "${String(inner)}" differs from ${what}.${idKey} "${id}"`);
  if (Buffer.byteLength(JSON.stringify(rest)) > MAX_RECORD_BYTES - 4096) {
    throw new RelayError(ErrorCode.InvalidArgument, `${what}.spec: larger than ${MAX_RECORD_BYTES - 4096} bytes`);
  }
  return rest;
}

function invalidIfThrows(check: () => unknown) {
  try {
    check();
  } catch (err) {
    if (isConfigError(err)) throw new RelayError(ErrorCode.InvalidArgument, err.message, { cause: err });
    throw err;
  }
}

function page(ids: string[], size: number, token: string) {
  const n = Math.min(size || PAGE.default, PAGE.max);
  const start = token ? ids.findIndex((id) => id > token) : 0;
  const from = start < 0 ? ids.length : start;
  const items = ids.slice(from, from + n);
  return { items, next: from + n < ids.length ? items.at(-1)! : '' };
}

function etagRevision(etag: string): number {
  const n = Number(etag);
  if (!/^\d{1,15}$/.test(etag) || n <= 0) throw new RelayError(ErrorCode.InvalidArgument, `etag: "${etag}" is not an etag this relay gave`);
  return n;
}

function isWrongSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

function conflict(err: unknown, message: string): RelayError {
  if (isWrongSequence(err)) return new RelayError(ErrorCode.Aborted, message, { cause: err });
  if (err instanceof RelayError) return err;
  return new RelayError(ErrorCode.Unavailable, 'the registry is unavailable (broker unreachable); retry', { cause: err });
}

/** The entry at the version named by `etag`: NOT_FOUND when gone, ABORTED when changed since. */
async function current<T>(kv: KV, key: string, what: string, etag: string): Promise<Versioned<T>> {
  const revision = etagRevision(etag);
  let rec: Versioned<T> | undefined;
  try {
    rec = await readRecord<T>(kv, key);
  } catch (err) {
    throw conflict(err, '');
  }
  if (!rec) throw new RelayError(ErrorCode.NotFound, `${what} "${key}" does not exist (deleted since etag ${etag})`);
  if (rec.revision !== revision) throw new RelayError(ErrorCode.Aborted, `${what} "${key}" changed since etag ${etag}; get it again`);
  return rec;
}

async function readRecord<T>(kv: KV, key: string): Promise<Versioned<T> | undefined> {
  const e = await kv.get(key);
  return e && e.operation === 'PUT' && e.length > 0 ? { value: e.json<T>(), revision: e.revision } : undefined;
}

async function exists(kv: KV, key: string): Promise<boolean> {
  try {
    return (await readRecord(kv, key)) !== undefined;
  } catch (err) {
    throw conflict(err, '');
  }
}

/** Creates (empty etag) or updates the version named by etag; answers the new revision. */
async function write(kv: KV, key: string, record: object, etag: string, what: string): Promise<number> {
  try {
    return etag ? await kv.update(key, JSON.stringify(record), etagRevision(etag)) : await kv.create(key, JSON.stringify(record));
  } catch (err) {
    if (isWrongSequence(err) && !etag)
      throw new RelayError(ErrorCode.AlreadyExists, `${what} "${key}" already exists; pass its etag to change it`, { cause: err });
    throw conflict(err, `${what} "${key}" changed since etag ${etag}; get it again`);
  }
}

/** Read, change, write at that revision; again when another change came between. */
async function modify<T>(kv: KV, key: string, what: string, change: (rec: T) => T): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    let rec: Versioned<T> | undefined;
    try {
      rec = await readRecord<T>(kv, key);
    } catch (err) {
      throw conflict(err, '');
    }
    if (!rec) throw new RelayError(ErrorCode.NotFound, `${what} "${key}" does not exist`);
    try {
      return await kv.update(key, JSON.stringify(change(rec.value)), rec.revision);
    } catch (err) {
      if (!isWrongSequence(err) || attempt >= 4) throw conflict(err, `${what} "${key}" is being changed; try again`);
    }
  }
}

/** Messages stored for a sender and not yet handed to delivery: its submitted, held and dispatch subjects. */
async function queuedFor(bus: Bus, sender: string): Promise<number> {
  const n = bus.names;
  const count = async (stream: string, subject: string) => {
    const info = await bus.jsm.streams.info(stream, { subjects_filter: subject });
    return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  };
  try {
    const counts = await Promise.all([
      count(n.submittedStream, n.submittedSubject(sender)),
      count(n.heldStream, n.heldSubject(sender)),
      count(n.dispatchStream, n.dispatchSubject('*', sender)),
    ]);
    return counts.reduce((a, b) => a + b, 0);
  } catch (err) {
    throw new RelayError(ErrorCode.Unavailable, 'cannot tell whether mail is queued for the sender (broker unreachable); retry', { cause: err });
  }
}
