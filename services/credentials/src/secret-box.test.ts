import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readEnv } from '@relay/config';
import { createSecretBox, isSecretBoxError, keyId } from './secret-box.js';

describe('secret box', () => {
  const key = randomBytes(32);
  it('round-trips and never stores the plaintext', () => {
    const box = createSecretBox(key);
    const rec = box.seal('refresh-token-value', 'refresh:no-reply');
    expect(rec.kid).toBe(keyId(key));
    expect(JSON.stringify(rec)).not.toContain('refresh-token-value');
    expect(box.open(rec, 'refresh:no-reply')).toBe('refresh-token-value');
    expect(box.seal('x', 'c').iv).not.toBe(box.seal('x', 'c').iv);
  });
  it('refuses a tampered record, another context and an unknown key', () => {
    const box = createSecretBox(key);
    const rec = box.seal('secret', 'a');
    const flipped = Buffer.from(rec.ciphertext, 'base64');
    flipped[0]! ^= 1;
    expect(() => box.open({ ...rec, ciphertext: flipped.toString('base64') }, 'a')).toThrow(/failed authentication/);
    expect(() => box.open(rec, 'b')).toThrow(/failed authentication/);
    const other = createSecretBox(randomBytes(32));
    try {
      other.open(rec, 'a');
      expect.unreachable();
    } catch (err) {
      expect(isSecretBoxError(err)).toBe(true);
      expect((err as Error).message).toMatch(/unknown master key/);
    }
  });
  it('opens records of an old key after rotation and says they are stale', () => {
    const oldBox = createSecretBox(key);
    const rec = oldBox.seal('secret', 'a');
    const newKey = randomBytes(32);
    const rotated = createSecretBox(newKey, readEnv({ RELAY_MASTER_KEY_OLD: key.toString('base64') }).oldMasterKeys);
    expect(rotated.open(rec, 'a')).toBe('secret');
    expect(rotated.isStale(rec)).toBe(true);
    expect(rotated.isStale(rotated.seal('x', 'a'))).toBe(false);
    expect(rotated.openString(rotated.sealToString('y', 'z'), 'z')).toBe('y');
  });
  it('checks old keys', () => {
    expect(() => readEnv({ RELAY_MASTER_KEY_OLD: 'c2hvcnQ=' })).toThrow(/RELAY_MASTER_KEY_OLD: key 1 must be 32 bytes/);
    expect(readEnv({}).oldMasterKeys).toEqual([]);
  });
});
