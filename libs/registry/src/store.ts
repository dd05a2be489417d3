import { Kvm, type KV } from '@nats-io/kv';
import type { Bus } from '@relay/bus';
import type { SenderSecretField } from '@relay/config';

/** When and by whom a sender's secret was set (the value itself lives sealed in relay-credentials). */
export interface SecretMeta {
  set_at: string;
  set_by: string;
}

/** A sender managed through the API: the KV value under its id in `<prefix>-senders`. */
export interface SenderRecord {
  /** The settings, as a relay.yaml `senders:` entry without `id` and without secrets. */
  spec: Record<string, unknown>;
  secrets: Partial<Record<SenderSecretField, SecretMeta>>;
  updated_at: string;
  updated_by: string;
}

/** An API key the relay made: its SHA-256 digest only. */
export interface StoredKey {
  id: string;
  digest: string;
  created_at: string;
  created_by: string;
  expires_at?: string;
}

/** A client managed through the API: the KV value under its name in `<prefix>-clients`. */
export interface ClientRecord {
  /** The settings, as a relay.yaml `clients:` entry without `name` and `api_key`. */
  spec: Record<string, unknown>;
  keys: StoredKey[];
  /** The SMTP AUTH password the relay made (CreateSmtpPassword): SHA-256 of lowercased username, NUL, password. */
  smtp_password?: { digest: string; username: string; created_at: string; created_by: string };
  /**
   * Per webhook URL whose signing secret relay-credentials made (CreateWebhookSecret): when and by
   * whom; the secret itself is sealed in relay-credentials. `previous_until`: the secret it replaced
   * still signs until then.
   */
  webhook_secrets?: Record<string, { created_at: string; created_by: string; previous_until?: string }>;
  updated_at: string;
  updated_by: string;
}

export interface Versioned<T> {
  value: T;
  /** The KV revision: the etag of the API. */
  revision: number;
}

export interface RegistryStore {
  senders: KV;
  clients: KV;
}

/** Largest registry entry: a sender's or client's settings are a few hundred bytes. */
export const MAX_RECORD_BYTES = 64 * 1024;
const HISTORY = 5;

/** Opens (creating when missing) the registry buckets of this relay. */
export async function openRegistry(bus: Bus, replicas = 1): Promise<RegistryStore> {
  const kvm = new Kvm(bus.js);
  const opts = { history: HISTORY, replicas, maxValueSize: MAX_RECORD_BYTES };
  const [senders, clients] = await Promise.all([kvm.create(bus.names.sendersBucket, opts), kvm.create(bus.names.clientsBucket, opts)]);
  return { senders, clients };
}

/** Only ids that are safe as KV keys, NATS subjects and Redis keys reach the registry. */
export const REGISTRY_KEY = /^[A-Za-z0-9_-]{1,64}$/;
