import { context, propagation, type Context } from '@opentelemetry/api';
import { create } from '@bufbuild/protobuf';
import { EnvelopeSchema, MessageState, type Envelope } from '@relay/proto';
import { describe } from '@relay/core';
import type { Bus } from './bus.js';
import { decodeEnvelope, encodeEnvelope } from './bus.js';
import { deleteBody, unpackEnvelope } from './bodies.js';

type Log = { warn(obj: object, msg: string): void };

/**
 * Keeps a FAILED message's full envelope in the failed store (object store with the failed
 * retention as TTL), with the trace context active now, so RetryMessages can send it again in the
 * same trace; then drops its body from the body store. Best effort: a full failed store costs the
 * message its retry, never its FAILED status.
 */
export async function keepFailed(bus: Bus, env: Envelope, log?: Log): Promise<void> {
  try {
    // A stub (routing fields only) has no recipients; an unpacked envelope keeps its bodyRef.
    const stub = env.bodyRef !== '' && env.to.length + env.cc.length + env.bcc.length === 0;
    const full = stub ? await unpackEnvelope(bus, env) : env;
    const bytes = encodeEnvelope(create(EnvelopeSchema, { ...full, bodyRef: '', notBefore: undefined }));
    const carrier: Record<string, string> = {};
    propagation.inject(context.active(), carrier);
    await bus.failed.putBlob({ name: env.messageId, metadata: carrier }, bytes);
  } catch (err) {
    log?.warn({ message_id: env.messageId, err: describe(err) }, 'could not keep the failed message for a retry');
  }
  await deleteBody(bus, env);
}

/** A failed message's envelope and the trace it belongs to; undefined once its retention ended. */
export async function loadFailed(bus: Bus, messageId: string): Promise<{ env: Envelope; trace: Context } | undefined> {
  const info = await bus.failed.info(messageId);
  if (!info || info.deleted) return undefined;
  const bytes = await bus.failed.getBlob(messageId);
  if (!bytes) return undefined;
  return { env: decodeEnvelope(bytes), trace: propagation.extract(context.active(), info.metadata ?? {}) };
}

/**
 * Settles a message as FAILED outside a delivery attempt (held too long, store refusals):
 * keeps its envelope for a retry, then records the reason.
 */
export async function deadLetter(bus: Bus, env: Envelope, reason: string, service: string, log?: Log): Promise<void> {
  await keepFailed(bus, env, log);
  await bus.publishStatus({ messageId: env.messageId, sender: env.sender, state: MessageState.FAILED, attempt: env.attempt, detail: reason, service });
}
