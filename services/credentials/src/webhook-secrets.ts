import { createHash, randomBytes } from 'node:crypto';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { secretsBucketName, type Bus } from '@relay/bus';
import { Webhook } from 'standardwebhooks';
import type { SealedRecord, SecretBox } from './secret-box.js';
import { SECRETS_HISTORY } from './secret-store.js';

/** Random bytes in a secret the relay makes (Standard Webhooks asks for 24 to 64). */
export const WEBHOOK_SECRET_BYTES = 32;

/** The KV value under `webhook.<client>.<url digest>`: the secrets sealed with the master key. */
interface StoredWebhookSecret {
  current: SealedRecord;
  /** The secret `current` replaced: it signs too until `previousUntil`. */
  previous?: SealedRecord;
  previousUntil?: string;
  createdAt: string;
}

export interface CreatedWebhookSecret {
  /** `whsec_` and the random bytes in base64: handed to the caller once, never kept in clear. */
  secret: string;
  createdAt: Date;
  previousUntil?: Date;
}

/**
 * Signing secrets of the webhooks of clients managed through the operations API. They are made
 * here, sealed in the credentials bucket, and used here only: ingest asks for each delivery's
 * signature and never holds a secret.
 */
export interface WebhookSecrets {
  /** A new secret for the webhook; the one it replaces keeps signing for `keepPreviousMs` (0: not at all). */
  create(client: string, url: string, keepPreviousMs: number, now?: Date): Promise<CreatedWebhookSecret>;
  /** The `webhook-signature` header for one delivery; undefined when the webhook has no secret. */
  sign(client: string, url: string, id: string, at: Date, payload: Uint8Array, now?: Date): Promise<string | undefined>;
}

export async function openWebhookSecrets(bus: Bus, box: SecretBox, replicas = 1): Promise<WebhookSecrets> {
  const kv: KV = await new Kvm(bus.js).create(secretsBucketName(bus.names.prefix), { history: SECRETS_HISTORY, replicas });
  // A URL is no KV key: its digest stands for it. The client's name is one already (registry ids).
  const key = (client: string, url: string) => `webhook.${client}.${createHash('sha256').update(url).digest('hex').slice(0, 40)}`;
  const context = (k: string) => `webhook:${bus.names.prefix}:${k}`;

  async function read(k: string): Promise<{ rec: StoredWebhookSecret; revision: number } | undefined> {
    const e = await kv.get(k);
    return e && e.operation === 'PUT' && e.length > 0 ? { rec: e.json<StoredWebhookSecret>(), revision: e.revision } : undefined;
  }

  return {
    async create(client, url, keepPreviousMs, now = new Date()) {
      const k = key(client, url);
      const secret = `whsec_${randomBytes(WEBHOOK_SECRET_BYTES).toString('base64')}`;
      for (let attempt = 0; ; attempt++) {
        const old = await read(k);
        const previousUntil = old && keepPreviousMs > 0 ? new Date(now.getTime() + keepPreviousMs) : undefined;
        const rec: StoredWebhookSecret = {
          current: box.seal(secret, context(k)),
          // Sealed again: a record of an old master key moves to the current one.
          ...(old && previousUntil
            ? { previous: box.seal(box.open(old.rec.current, context(k)), context(k)), previousUntil: previousUntil.toISOString() }
            : {}),
          createdAt: now.toISOString(),
        };
        try {
          if (old) await kv.update(k, JSON.stringify(rec), old.revision);
          else await kv.create(k, JSON.stringify(rec));
          return { secret, createdAt: now, ...(previousUntil ? { previousUntil } : {}) };
        } catch (err) {
          // Another replica made one at the same moment: this one replaces it.
          if (!isWrongSequence(err) || attempt >= 4) throw err;
        }
      }
    },
    async sign(client, url, id, at, payload, now = new Date()) {
      const k = key(client, url);
      const found = await read(k);
      if (!found) return undefined;
      const { rec } = found;
      const secrets = [box.open(rec.current, context(k))];
      if (rec.previous && rec.previousUntil && Date.parse(rec.previousUntil) > now.getTime()) secrets.push(box.open(rec.previous, context(k)));
      // One signature per secret, space-separated: a receiver holding either one verifies it.
      return secrets.map((s) => new Webhook(s).sign(id, at, payload)).join(' ');
    },
  };
}

function isWrongSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
