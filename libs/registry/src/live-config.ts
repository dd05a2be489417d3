import { unwatchFile, watchFile } from 'node:fs';
import type { KV } from '@nats-io/kv';
import type { Bus } from '@relay/bus';
import {
  loadConfigFile,
  MissingSecret,
  parseManagedClient,
  parseManagedSender,
  SEALED_REF,
  Secret,
  UnresolvedSecret,
  type ClientConfig,
  type RelayConfig,
  type SecretResolution,
  type SenderConfig,
} from '@relay/config';
import { describe } from '@relay/core';
import { openRegistry, type ClientRecord, type RegistryStore, type SenderRecord, type Versioned } from './store.js';

export interface LiveConfigLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface LiveConfigOptions {
  bus: Bus;
  /** relay.yaml as loaded at start. */
  config: RelayConfig;
  logger: LiveConfigLogger;
  /** Re-read this file when it changes (relay.yaml edits take effect without a restart). */
  configPath?: string | undefined;
  /** Environment for the file's env: secrets on reload; default process.env. */
  secretsEnv?: Record<string, string | undefined>;
  resolveSecrets?: SecretResolution;
  reloadIntervalMs?: number;
  /** JetStream replicas of the registry buckets. */
  replicas?: number;
  /**
   * The value of a managed sender's secret (relay-credentials only); other services leave secrets
   * of managed senders unresolved.
   */
  managedSecret?: (sender: string, field: string) => string | undefined;
}

/**
 * The configuration a service works with: relay.yaml (entries `managed_by: file`) merged with the
 * senders and clients of the registry (JetStream KV, managed through the operations API), kept
 * current as either changes. relay.yaml wins where both define an id.
 */
export interface LiveConfig {
  readonly store: RegistryStore;
  current(): RelayConfig;
  /** Called, one change at a time, after every change with the new configuration. */
  onChange(fn: (config: RelayConfig) => void | Promise<void>): void;
  /** The registry's entries as stored (for the operations API). */
  senderRecords(): ReadonlyMap<string, Versioned<SenderRecord>>;
  clientRecords(): ReadonlyMap<string, Versioned<ClientRecord>>;
  /** Recomputes the configuration (relay-credentials, after a managed secret changed). */
  refresh(): void;
  /** Resolves once the registry's current entries are in (start waits for it). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Longest wait for a registry bucket's entries at start, for a bucket whose last message was purged. */
const READY_FALLBACK_MS = 5_000;

export async function createLiveConfig(opts: LiveConfigOptions): Promise<LiveConfig> {
  const { logger } = opts;
  const store = await openRegistry(opts.bus, opts.replicas);
  let file = opts.config;
  const senders = new Map<string, Versioned<SenderRecord>>();
  const clients = new Map<string, Versioned<ClientRecord>>();
  const listeners: ((c: RelayConfig) => void | Promise<void>)[] = [];
  // One warning per entry version that cannot be used.
  const warned = new Set<string>();
  let current = merge();
  let chain = Promise.resolve();
  let started = false;
  let stopped = false;
  const watches: { stop(): void; done: Promise<void> }[] = [];

  function warnOnce(key: string, obj: object, msg: string) {
    if (warned.has(key)) return;
    warned.add(key);
    logger.warn(obj, msg);
  }

  /** A managed sender's secrets: only those its record says are set (for these settings) are looked up. */
  function resolveManaged(id: string, set: SenderRecord['secrets']) {
    return (ref: string, key: string): Secret => {
      const field = ref.startsWith(SEALED_REF) ? ref.slice(SEALED_REF.length) : key;
      if (!opts.managedSecret) return new UnresolvedSecret(key, ref);
      const value = field in set ? opts.managedSecret(id, field) : undefined;
      return value === undefined ? new MissingSecret(id, field) : new Secret(value);
    };
  }

  function merge(): RelayConfig {
    const fileSenders = new Set(file.senders.map((s) => s.id));
    const merged: SenderConfig[] = [...file.senders];
    for (const [id, { value, revision }] of senders) {
      if (fileSenders.has(id)) {
        warnOnce(`sender:${id}:${revision}:file`, { sender: id }, 'sender defined in relay.yaml and in the registry: relay.yaml wins');
        continue;
      }
      try {
        merged.push(parseManagedSender({ ...value.spec, id }, resolveManaged(id, value.secrets), (f) => value.secrets[f] !== undefined));
      } catch (err) {
        warnOnce(`sender:${id}:${revision}`, { sender: id, err: describe(err) }, 'registry sender not usable; skipped');
      }
    }
    const ids = new Set(merged.map((s) => s.id));
    const fileClients = new Set(file.clients.map((c) => c.name));
    const mergedClients: ClientConfig[] = [...file.clients];
    for (const [name, { value, revision }] of clients) {
      if (fileClients.has(name)) {
        warnOnce(`client:${name}:${revision}:file`, { client: name }, 'client defined in relay.yaml and in the registry: relay.yaml wins');
        continue;
      }
      try {
        const keys = value.keys.map((k) => ({ id: k.id, digest: k.digest, ...(k.expires_at ? { expiresAt: Date.parse(k.expires_at) } : {}) }));
        const secrets = Object.fromEntries(Object.entries(value.webhook_secrets ?? {}).map(([url, m]) => [url, m.created_at]));
        const client = parseManagedClient({ ...value.spec, name }, keys, undefined, value.smtp_password?.digest, secrets);
        // A sender deleted since keeps no client from working with the others.
        mergedClients.push({ ...client, senders: client.senders.filter((s) => ids.has(s)) });
      } catch (err) {
        warnOnce(`client:${name}:${revision}`, { client: name, err: describe(err) }, 'registry client not usable; skipped');
      }
    }
    return { ...file, senders: merged, clients: mergedClients };
  }

  function changed() {
    if (!started || stopped) return;
    current = merge();
    const snapshot = current;
    chain = chain.then(async () => {
      for (const fn of listeners) {
        try {
          await fn(snapshot);
        } catch (err) {
          logger.error({ err: describe(err) }, 'applying a configuration change failed');
        }
      }
    });
  }

  /** Watches one bucket into `into`; resolves `ready` once the entries present at start are in. */
  async function watch<T>(kv: KV, into: Map<string, Versioned<T>>, what: string): Promise<Promise<void>> {
    const last = (await kv.status()).streamInfo.state.last_seq;
    const iter = await kv.watch();
    let markReady!: () => void;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    if (last === 0) markReady();
    // The bucket's last message may be gone (a purge) and the watch then has nothing to deliver.
    const fallback = setTimeout(() => {
      markReady();
    }, READY_FALLBACK_MS);
    void ready.then(() => clearTimeout(fallback));
    const done = (async () => {
      for await (const e of iter) {
        if (e.operation === 'PUT' && e.length > 0) {
          try {
            into.set(e.key, { value: e.json<T>(), revision: e.revision });
          } catch (err) {
            warnOnce(`${what}:${e.key}:${e.revision}:json`, { key: e.key, err: describe(err) }, `registry ${what} entry is not JSON; skipped`);
          }
        } else into.delete(e.key);
        // Caught up: the newest message of the bucket at start, or nothing more pending.
        if (e.revision >= last || e.delta === 0) {
          markReady();
          changed();
        }
      }
    })();
    watches.push({ stop: () => iter.stop(), done });
    return ready;
  }

  function watchFileChanges(path: string) {
    watchFile(path, { interval: opts.reloadIntervalMs ?? 2_000 }, () => {
      if (stopped) return;
      try {
        file = loadConfigFile(path, opts.secretsEnv ?? process.env, { resolveSecrets: opts.resolveSecrets ?? 'none' });
        logger.info({ senders: file.senders.length, clients: file.clients.length }, 'relay.yaml reloaded');
        changed();
      } catch (err) {
        logger.error({ err: describe(err) }, 'relay.yaml change ignored: it is not valid; the previous one stays in force');
      }
    });
  }

  return {
    store,
    current: () => current,
    onChange: (fn) => void listeners.push(fn),
    senderRecords: () => senders,
    clientRecords: () => clients,
    refresh: changed,
    async start() {
      const ready = await Promise.all([watch(store.senders, senders, 'sender'), watch(store.clients, clients, 'client')]);
      await Promise.all(ready);
      started = true;
      current = merge();
      if (opts.configPath) watchFileChanges(opts.configPath);
    },
    async stop() {
      stopped = true;
      if (opts.configPath) unwatchFile(opts.configPath);
      for (const w of watches) w.stop();
      await Promise.allSettled(watches.map((w) => w.done));
      await chain;
    },
  };
}
