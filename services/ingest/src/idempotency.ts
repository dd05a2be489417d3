import { createHash } from 'node:crypto';
import { JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { ErrorCode, RelayError } from '@relay/core';
import type { SendMailRequest } from '@relay/proto';

interface Record {
  messageId: string;
  fingerprint: string;
  /** False until the message is stored; a retry then publishes again under the same id. */
  stored: boolean;
}

/** JetStream's answer when the key already has a value. */
const WRONG_LAST_SEQUENCE = new Set([10071, 10164]);

export type Claim = { kind: 'new' | 'resume'; messageId: string; key: string } | { kind: 'done'; messageId: string };

/** What makes two requests "the same message": every field but the idempotency key itself. */
export function fingerprint(req: SendMailRequest): string {
  const h = createHash('sha256');
  const put = (s: string) => h.update(`${Buffer.byteLength(s)}:${s};`);
  put(req.sender);
  for (const list of [req.to, req.cc, req.bcc]) put(list.join('\n'));
  for (const s of [req.replyTo, req.subject, req.text, req.html]) put(s);
  for (const [k, v] of Object.entries(req.headers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) put(`${k}=${v}`);
  for (const a of req.attachments) {
    put(a.filename);
    put(a.contentType);
    h.update(a.content);
  }
  put(req.sendAt ? `${req.sendAt.seconds}.${req.sendAt.nanos}` : '');
  return h.digest('hex');
}

function recordKey(client: string, idempotencyKey: string): string {
  return createHash('sha256').update(client).update('\0').update(idempotencyKey).digest('hex');
}

/**
 * Claims an idempotency key for a client. The first caller gets `new`; a repeat with the same
 * message gets `done` (or `resume` if the first never got as far as storing it); a repeat with a
 * different message gets ALREADY_EXISTS.
 */
export async function claim(kv: KV, client: string, idempotencyKey: string, fp: string, newId: string): Promise<Claim> {
  const key = recordKey(client, idempotencyKey);
  const mine: Record = { messageId: newId, fingerprint: fp, stored: false };
  for (let i = 0; i < 3; i++) {
    try {
      // A put that expects no earlier value: one round trip, and a broker that is down fails it
      // after one timeout instead of the create-then-read that kv.create() does.
      await kv.put(key, JSON.stringify(mine), { previousSeq: 0 });
      return { kind: 'new', messageId: newId, key };
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || !WRONG_LAST_SEQUENCE.has(err.code)) throw err;
      const existing = await kv.get(key);
      if (existing?.operation !== 'PUT') {
        if (i === 2) throw err;
        continue; // expired or deleted between our create and get: try again
      }
      const rec = existing.json<Record>();
      if (rec.fingerprint !== fp) {
        throw new RelayError(ErrorCode.AlreadyExists, `idempotency_key: already used for a different message (${rec.messageId})`);
      }
      return rec.stored ? { kind: 'done', messageId: rec.messageId } : { kind: 'resume', messageId: rec.messageId, key };
    }
  }
  throw new RelayError(ErrorCode.Unavailable, 'idempotency_key: could not be recorded; retry');
}

export async function markStored(kv: KV, key: string, messageId: string, fp: string): Promise<void> {
  const rec: Record = { messageId, fingerprint: fp, stored: true };
  await kv.put(key, JSON.stringify(rec));
}
