import { createHash } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { secretsBucketName, type Bus } from '@relay/bus';
import type { SealedRecord, SecretBox } from './secret-box.js';

/** How a stored refresh token came to be. */
export type RefreshTokenSource = 'import' | 'consent' | 'rotation';

/** The KV value under `refresh.<sender>`: the token sealed with the master key, never in clear. */
interface StoredRefreshToken {
  sealed: SealedRecord;
  source: RefreshTokenSource;
  /** Fingerprint of the refresh_token in relay.yaml this record descends from; a different one in the file is imported anew. */
  importFingerprint?: string;
  updatedAt: string;
}

export interface RefreshTokenStore {
  readonly bucket: string;
  /** The current refresh token of a sender: the stored one, or the one in relay.yaml when that is newer. */
  get(sender: string, configured?: string): Promise<string | undefined>;
  put(sender: string, token: string, source: RefreshTokenSource, configured?: string): Promise<void>;
  /** Removes a sender's stored refresh token (the sender was deleted or now signs in elsewhere). */
  forget(sender: string): Promise<void>;
}

export const SECRETS_HISTORY = 5;

// One definition, shared with the NATS permissions that give credentials (only) this bucket.
export { secretsBucketName } from '@relay/bus';

/** Fingerprint of a configured secret, to notice that the operator changed it (not reversible). */
export function fingerprint(secret: string): string {
  return createHash('sha256').update('relay-import:').update(secret).digest('base64url').slice(0, 22);
}

/** Encrypted refresh tokens in the JetStream KV bucket `<prefix>-secrets` (durable, shared by every replica). */
export async function openRefreshTokenStore(bus: Bus, box: SecretBox, replicas = 1): Promise<RefreshTokenStore> {
  const bucket = secretsBucketName(bus.names.prefix);
  const kv: KV = await new Kvm(bus.js).create(bucket, { history: SECRETS_HISTORY, replicas });
  const key = (sender: string) => `refresh.${sender}`;
  const context = (sender: string) => `refresh:${bus.names.prefix}:${sender}`;

  const store: RefreshTokenStore = {
    bucket,
    async get(sender, configured) {
      const entry = await kv.get(key(sender));
      const rec = entry && entry.operation === 'PUT' && entry.length > 0 ? (entry.json() as StoredRefreshToken) : undefined;
      const configuredPrint = configured ? fingerprint(configured) : undefined;
      if (configured && (!rec || rec.importFingerprint !== configuredPrint)) {
        await store.put(sender, configured, 'import', configured);
        return configured;
      }
      if (!rec) return undefined;
      const token = box.open(rec.sealed, context(sender));
      // Records sealed with an old master key are sealed again with the current one.
      if (box.isStale(rec.sealed))
        await kv.put(key(sender), JSON.stringify({ ...rec, sealed: box.seal(token, context(sender)), updatedAt: new Date().toISOString() }));
      return token;
    },
    async put(sender, token, source, configured) {
      const rec: StoredRefreshToken = {
        sealed: box.seal(token, context(sender)),
        source,
        ...(configured ? { importFingerprint: fingerprint(configured) } : {}),
        updatedAt: new Date().toISOString(),
      };
      await kv.put(key(sender), JSON.stringify(rec));
    },
    async forget(sender) {
      await kv.purge(key(sender));
    },
  };
  return store;
}
