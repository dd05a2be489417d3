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
  const h = createHmac('sha256', key);
  const str = (s: string) => field(h, Buffer.from(s, 'utf8'));
  const list = (l: string[]) => {
    num(h, l.length);
    for (const s of l) str(s);
  };
  str('relay-envelope-v1');
  str(env.messageId);
  str(env.sender);
  str(env.client);
  list(env.to);
  list(env.cc);
  list(env.bcc);
  str(env.replyTo);
  str(env.subject);
  str(env.text);
  str(env.html);
  num(h, env.attachments.length);
  for (const a of env.attachments) field(h, toBinary(AttachmentSchema, a));
  const headers = Object.keys(env.headers).sort();
  num(h, headers.length);
  for (const k of headers) {
    str(k);
    str(env.headers[k]!);
  }
  time(h, env.sendAt);
  time(h, env.submittedAt);
  num(h, env.recipientCount);
  num(h, Number(env.sizeBytes));
  // A message submitted over the SMTP door: its bytes and its SMTP envelope.
  field(h, env.rawMime);
  list(env.envelopeTo);
  str(env.envelopeFrom);
  return h.digest();
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
  if (!ctx.known) await ctx.bus.publishStatus({ messageId: env.messageId, sender: env.sender, state: MessageState.FAILED, attempt: env.attempt, detail: ENVELOPE_SIG_INVALID, service: ctx.service });
  ctx.log.warn({ message_id: env.messageId, sender: env.sender, client: env.client, attempt: env.attempt }, `refused: ${ENVELOPE_SIG_INVALID}`);
  return true;
}

function field(h: Hmac, b: Uint8Array) {
  num(h, b.length);
  h.update(b);
}

function num(h: Hmac, n: number) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  h.update(b);
}

function time(h: Hmac, t: Timestamp | undefined) {
  if (!t) {
    h.update(Buffer.from([0]));
    return;
  }
  h.update(Buffer.from([1]));
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(BigInt.asUintN(64, t.seconds));
  b.writeUInt32BE(t.nanos >>> 0, 8);
  h.update(b);
}
