import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { toBinary } from '@bufbuild/protobuf';
import type { Timestamp } from '@bufbuild/protobuf/wkt';
import { AttachmentSchema, MessageState, type Envelope } from '@relay/proto';
import type { Bus } from './bus.js';

/** The status detail of a message refused because its envelope was not signed by ingest. */
export const ENVELOPE_SIG_INVALID = 'envelope signature invalid: not accepted through ingest';

/**
 * The keys of the envelope signature: ingest signs with `current`; senders accept `current` or one
 * of `previous` (while a rotation rolls out).
 */
export interface EnvelopeKeys {
  current: Buffer;
  previous?: Buffer[];
}

/**
 * HMAC-SHA256 over every field a delivery depends on, each length-prefixed so that no two
 * envelopes share an input. Left out: what the scheduler and retries change (attempt, not_before)
 * and where the body is kept (body_ref: the stored envelope carries the same signature).
 */
export function envelopeSignature(key: Buffer, env: Envelope): Buffer {
  // Small fields are put together and hashed in one update: one native call, not dozens.
  const w = new SigInput(createHmac('sha256', key));
  w.str('relay-envelope-v1');
  w.str(env.messageId);
  w.str(env.sender);
  w.str(env.client);
  w.list(env.to);
  w.list(env.cc);
  w.list(env.bcc);
  w.str(env.replyTo);
  w.str(env.subject);
  w.str(env.text);
  w.str(env.html);
  w.num(env.attachments.length);
  for (const a of env.attachments) w.field(toBinary(AttachmentSchema, a));
  const headers = Object.keys(env.headers).sort();
  w.num(headers.length);
  for (const k of headers) {
    w.str(k);
    w.str(env.headers[k]!);
  }
  w.time(env.sendAt);
  w.time(env.submittedAt);
  w.num(env.recipientCount);
  w.num(Number(env.sizeBytes));
  // A message submitted over the SMTP door: its bytes and its SMTP envelope.
  w.field(env.rawMime);
  w.list(env.envelopeTo);
  w.str(env.envelopeFrom);
  return w.digest();
}

/** `env` with ingest's signature set (in place). */
export function signEnvelope(key: Buffer, env: Envelope): Envelope {
  env.ingestSig = envelopeSignature(key, env);
  return env;
}

/** True when `env` carries a signature made with one of `keys`. */
export function verifyEnvelope(keys: EnvelopeKeys, env: Envelope): boolean {
  const sig = env.ingestSig;
  if (sig.length !== 32) return false;
  for (const key of [keys.current, ...(keys.previous ?? [])]) {
    if (timingSafeEqual(envelopeSignature(key, env), sig)) return true;
  }
  return false;
}

export interface RefusalContext {
  bus: Pick<Bus, 'publishStatus'>;
  service: string;
  log: { warn(obj: object, msg: string): void };
  /** The message id already has status events (a genuine message accepted by ingest has). */
  known?: boolean;
}

/**
 * For a sender, before anything is sent: when `env` was not signed by ingest, reports it FAILED
 * and returns true (the caller acks it; it is never delivered). Its body is left alone: a forged
 * envelope may name another message's. A forgery naming a message ingest accepted is only logged,
 * so it cannot fail that message.
 */
export async function refuseUnsigned(keys: EnvelopeKeys | undefined, env: Envelope, ctx: RefusalContext): Promise<boolean> {
  if (!keys || verifyEnvelope(keys, env)) return false;
  if (!ctx.known)
    await ctx.bus.publishStatus({
      messageId: env.messageId,
      sender: env.sender,
      state: MessageState.FAILED,
      attempt: env.attempt,
      detail: ENVELOPE_SIG_INVALID,
      service: ctx.service,
    });
  ctx.log.warn({ message_id: env.messageId, sender: env.sender, client: env.client, attempt: env.attempt }, `refused: ${ENVELOPE_SIG_INVALID}`);
  return true;
}

/** Large fields (a raw message, an attachment) go to the hash as they are, without a copy. */
const LARGE_FIELD = 16 * 1024;

/** The signature's input: every field length-prefixed (8 bytes, big-endian). */
class SigInput {
  #parts: Uint8Array[] = [];
  #size = 0;

  constructor(readonly hmac: Hmac) {}

  #flush() {
    if (this.#parts.length > 0) this.hmac.update(Buffer.concat(this.#parts, this.#size));
    this.#parts = [];
    this.#size = 0;
  }

  #push(b: Uint8Array) {
    this.#parts.push(b);
    this.#size += b.length;
  }

  num(n: number) {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt(n));
    this.#push(b);
  }

  field(b: Uint8Array) {
    this.num(b.length);
    if (b.length < LARGE_FIELD) return this.#push(b);
    this.#flush();
    this.hmac.update(b);
  }

  str(s: string) {
    this.field(Buffer.from(s, 'utf8'));
  }

  list(l: string[]) {
    this.num(l.length);
    for (const s of l) this.str(s);
  }

  time(t: Timestamp | undefined) {
    if (!t) {
      this.#push(Buffer.from([0]));
      return;
    }
    const b = Buffer.allocUnsafe(13);
    b[0] = 1;
    b.writeBigUInt64BE(BigInt.asUintN(64, t.seconds), 1);
    b.writeUInt32BE(t.nanos >>> 0, 9);
    this.#push(b);
  }

  digest(): Buffer {
    this.#flush();
    return this.hmac.digest();
  }
}
