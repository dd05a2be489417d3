import { Kvm, type KV } from '@nats-io/kv';
import { secretsBucketName, type Bus } from '@relay/bus';
import type { SealedRecord, SecretBox } from './secret-box.js';
import { SECRETS_HISTORY } from './secret-store.js';

/**
 * Secrets of senders managed through the operations API (SetSenderSecret): sealed with the master
 * key in the credentials bucket under `sender.<id>.<field>`, and held opened in this process's
 * memory only, like relay.yaml's. Every replica watches the bucket, so a secret set through one is
 * in force on all.
 */
export interface ManagedSecrets {
  get(sender: string, field: string): string | undefined;
  set(sender: string, field: string, value: string): Promise<void>;
  deleteSender(sender: string): Promise<void>;
  /** Called after the secrets changed (set here or on another replica). */
  onChange(fn: () => void): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface StoredSecret {
  sealed: SealedRecord;
  updatedAt: string;
}

export async function openManagedSecrets(
  bus: Bus,
  box: SecretBox,
  replicas = 1,
  onError: (err: unknown, key: string) => void = () => {},
): Promise<ManagedSecrets> {
  const kv: KV = await new Kvm(bus.js).create(secretsBucketName(bus.names.prefix), { history: SECRETS_HISTORY, replicas });
  const key = (sender: string, field: string) => `sender.${sender}.${field}`;
  const context = (k: string) => `managed:${bus.names.prefix}:${k}`;
  const values = new Map<string, string>();
  const listeners: (() => void)[] = [];
  let stopWatch: (() => void) | undefined;
  let done: Promise<void> | undefined;

  function apply(k: string, rec: StoredSecret | undefined) {
    if (!rec) values.delete(k);
    else values.set(k, box.open(rec.sealed, context(k)));
  }

  return {
    get: (sender, field) => values.get(key(sender, field)),
    async set(sender, field, value) {
      const k = key(sender, field);
      await kv.put(k, JSON.stringify({ sealed: box.seal(value, context(k)), updatedAt: new Date().toISOString() } satisfies StoredSecret));
      values.set(k, value);
      for (const fn of listeners) fn();
    },
    async deleteSender(sender) {
      const keys = await kv.keys(`sender.${sender}.>`);
      for await (const k of keys) await kv.purge(k);
    },
    onChange: (fn) => void listeners.push(fn),
    async start() {
      // Changes first, then what is there: both end at the newest value of every key.
      const iter = await kv.watch({ key: 'sender.>', include: 'updates' });
      stopWatch = () => iter.stop();
      done = (async () => {
        for await (const e of iter) {
          try {
            apply(e.key, e.operation === 'PUT' && e.length > 0 ? e.json<StoredSecret>() : undefined);
          } catch (err) {
            onError(err, e.key);
          }
          for (const fn of listeners) fn();
        }
      })();
      for await (const k of await kv.keys('sender.>')) {
        const e = await kv.get(k);
        try {
          apply(k, e && e.operation === 'PUT' && e.length > 0 ? e.json<StoredSecret>() : undefined);
        } catch (err) {
          onError(err, k);
        }
      }
    },
    async stop() {
      stopWatch?.();
      await done;
    },
  };
}
