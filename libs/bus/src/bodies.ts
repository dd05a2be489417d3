import { create } from '@bufbuild/protobuf';
import { RelayError, ErrorCode } from '@relay/core';
import { EnvelopeSchema, type Envelope } from '@relay/proto';
import type { Bus } from './bus.js';
import { decodeEnvelope, encodeEnvelope, keepEncoding } from './bus.js';

/** Room left in a broker message for headers and the stub's routing fields. */
const HEADROOM_BYTES = 64 * 1024;

/**
 * Returns what to publish for `env`: the envelope itself when it fits in one broker message,
 * otherwise a stub carrying only routing fields, with the full envelope in the body object store.
 */
export async function packEnvelope(bus: Bus, env: Envelope): Promise<Envelope> {
  if (env.bodyRef) return env;
  const bytes = encodeEnvelope(env);
  if (bytes.length <= bus.maxPayload - HEADROOM_BYTES) {
    keepEncoding(env, bytes);
    return env;
  }
  const name = `${env.messageId}`;
  await bus.bodies.putBlob({ name }, bytes);
  return create(EnvelopeSchema, {
    messageId: env.messageId,
    sender: env.sender,
    client: env.client,
    sendAt: env.sendAt,
    submittedAt: env.submittedAt,
    attempt: env.attempt,
    notBefore: env.notBefore,
    firstAttemptAt: env.firstAttemptAt,
    recipientCount: env.recipientCount,
    sizeBytes: env.sizeBytes,
    bodyRef: name,
    ingestSig: env.ingestSig,
  });
}

/** The full envelope for a stub (reading the body store), keeping the stub's routing fields. */
export async function unpackEnvelope(bus: Bus, stub: Envelope): Promise<Envelope> {
  if (!stub.bodyRef) return stub;
  const bytes = await readBody(bus, stub.bodyRef);
  // Decoding keeps attachment contents as views into `bytes`: the body is in memory once.
  const full = decodeEnvelope(bytes);
  // The stub's identity wins: a stub that names another message's body then fails the envelope
  // signature (which covers id and sender) instead of sending that message under a new id.
  full.messageId = stub.messageId;
  full.sender = stub.sender;
  full.attempt = stub.attempt;
  full.notBefore = stub.notBefore;
  full.firstAttemptAt = stub.firstAttemptAt;
  full.bodyRef = stub.bodyRef;
  return full;
}

/**
 * A stored body, streamed chunk by chunk into one buffer of the size the store recorded: the body
 * is held whole once (the store's own getBlob gathers the chunks and then joins them, twice).
 */
async function readBody(bus: Bus, name: string): Promise<Uint8Array> {
  const found = await bus.bodies.get(name);
  if (!found) throw new RelayError(ErrorCode.NotFound, `message body ${name} is missing from the body store`);
  const out = new Uint8Array(found.info.size);
  let at = 0;
  const reader = found.data.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.length > out.length)
      throw new RelayError(ErrorCode.Internal, `message body ${name} is longer than the ${out.length} bytes the body store recorded`);
    out.set(value, at);
    at += value.length;
  }
  const failed = await found.error;
  if (failed) throw failed;
  if (at !== out.length) throw new RelayError(ErrorCode.Internal, `message body ${name} ended after ${at} of ${out.length} bytes`);
  return out;
}

/** Removes a message's stored body once the message reached a final state. */
export async function deleteBody(bus: Bus, env: Envelope): Promise<void> {
  if (env.bodyRef) await bus.bodies.delete(env.bodyRef).catch(() => {});
}
