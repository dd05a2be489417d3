import { randomBytes } from 'node:crypto';

// Random bytes for 256 ids at a time, as node:crypto's randomUUID() caches them: a draw from the
// system's generator for every id shows in ingest's profile under load.
const POOL_BYTES = 16 * 256;
let pool = Buffer.alloc(0);
let used = POOL_BYTES;

/** A UUIDv7: time-ordered, so message ids sort by submission time. */
export function uuidv7(now = Date.now()): string {
  if (used + 16 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  const b = Buffer.allocUnsafe(16);
  pool.copy(b, 0, used, used + 16);
  used += 16;
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
