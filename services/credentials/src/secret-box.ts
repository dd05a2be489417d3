import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { ErrorCode, RelayError } from '@relay/core';

/** One encrypted value as stored at rest (JetStream KV, Redis): AES-256-GCM under a key named by `kid`. */
export interface SealedRecord {
  /** Which master key sealed it: the first 8 bytes of sha256(key), hex. */
  kid: string;
  iv: string;
  tag: string;
  ciphertext: string;
}

export interface SecretBox {
  /** The id of the current key; new records are sealed with it. */
  readonly kid: string;
  /** Encrypts `plaintext`; `context` (e.g. "refresh:<sender>") is bound as additional data, so a record moved to another key does not open. */
  seal(plaintext: string, context: string): SealedRecord;
  open(record: SealedRecord, context: string): string;
  sealToString(plaintext: string, context: string): string;
  openString(text: string, context: string): string;
  /** True when the record was sealed with an older key and should be sealed again. */
  isStale(record: SealedRecord): boolean;
}

const IV_BYTES = 12;
const KID_BYTES = 8;

export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest().subarray(0, KID_BYTES).toString('hex');
}

/**
 * AES-256-GCM with the master key. Older keys (RELAY_MASTER_KEY_OLD) still open records they
 * sealed, so a key can be rotated without losing stored refresh tokens.
 */
export function createSecretBox(current: Buffer, old: readonly Buffer[] = []): SecretBox {
  for (const k of [current, ...old]) if (k.length !== 32) throw new RelayError(ErrorCode.Config, 'master keys must be 32 bytes');
  const kid = keyId(current);
  const keys = new Map<string, Buffer>([[kid, current], ...old.map((k): [string, Buffer] => [keyId(k), k])]);
  const box: SecretBox = {
    kid,
    seal(plaintext, context) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current, iv);
      cipher.setAAD(Buffer.from(context));
      const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return { kid, iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), ciphertext: ciphertext.toString('base64') };
    },
    open(record, context) {
      const key = keys.get(record.kid);
      if (!key) throw new SecretBoxError(`sealed with an unknown master key (kid ${record.kid}); set the old key in RELAY_MASTER_KEY_OLD`);
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(record.iv, 'base64'));
        decipher.setAAD(Buffer.from(context));
        decipher.setAuthTag(Buffer.from(record.tag, 'base64'));
        return Buffer.concat([decipher.update(Buffer.from(record.ciphertext, 'base64')), decipher.final()]).toString('utf8');
      } catch (err) {
        throw new SecretBoxError('a sealed record failed authentication (tampered, or sealed for another context)', { cause: err });
      }
    },
    sealToString: (plaintext, context) => JSON.stringify(box.seal(plaintext, context)),
    openString(text, context) {
      let record: SealedRecord;
      try {
        record = JSON.parse(text) as SealedRecord;
      } catch (err) {
        throw new SecretBoxError('a sealed record is not valid JSON', { cause: err });
      }
      return box.open(record, context);
    },
    isStale: (record) => record.kid !== kid,
  };
  return box;
}

export class SecretBoxError extends RelayError {
  override name = 'SecretBoxError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Internal, message, options);
  }
}

export function isSecretBoxError(err: unknown): err is SecretBoxError {
  return err instanceof SecretBoxError;
}
