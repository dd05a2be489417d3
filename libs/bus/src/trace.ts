import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import type { JsMsg } from '@nats-io/jetstream';
import { describe, MESSAGE_LOG_KEY, type MessageLogContext } from '@relay/core';

/**
 * Trace context across the JetStream hops, after the OpenTelemetry messaging semantic conventions:
 * every publish is a PRODUCER span whose context travels in the message's NATS headers
 * (`traceparent`, `tracestate`), and every consumed message is processed in a CONSUMER span that
 * continues it. A message keeps one trace from SendMail to the provider's answer, retries included.
 */
const tracer = () => trace.getTracer('@relay/bus');

const setter: TextMapSetter<MsgHdrs> = { set: (h, key, value) => h.set(key, value) };
const getter: TextMapGetter<MsgHdrs | undefined> = {
  get: (h, key) => (h?.has(key) ? h.get(key) : undefined),
  keys: (h) => (h ? h.keys() : []),
};

/** The context a message's headers carry (the active one when they carry none). */
export function extractContext(headers: MsgHdrs | undefined, base: Context = context.active()): Context {
  return propagation.extract(base, headers, getter);
}

/** A copy of `base` (or new headers) with the trace context of `ctx` written in. */
export function injectContext(ctx: Context, base?: MsgHdrs): MsgHdrs {
  const h = natsHeaders();
  if (base) for (const k of base.keys()) for (const v of base.values(k)) h.append(k, v);
  propagation.inject(ctx, h, setter);
  return h;
}

export interface PublishTrace {
  subject: string;
  messageId: string;
  /** The message's Nats-Msg-Id. */
  natsMsgId: string;
  bodySize: number;
  sender: string;
}

/** Runs a publish in a PRODUCER span; `fn` gets the headers to send, carrying the span's context. */
export async function tracedPublish<T>(t: PublishTrace, base: MsgHdrs | undefined, fn: (headers: MsgHdrs) => Promise<T>): Promise<T> {
  return tracer().startActiveSpan(
    `publish ${t.subject}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'publish',
        'messaging.destination.name': t.subject,
        'messaging.message.id': t.natsMsgId,
        'messaging.message.body.size': t.bodySize,
        'relay.message.id': t.messageId,
        'relay.sender': t.sender,
      },
    },
    async (span) => {
      try {
        return await fn(injectContext(context.active(), base));
      } catch (err) {
        fail(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

export interface ProcessTrace {
  /** The durable consumer (the consumer group of the messaging conventions). */
  consumer: string;
  messageId: string;
  sender: string;
}

/**
 * Processes a consumed message in a CONSUMER span continuing the trace its headers carry; the
 * message's id and sender go on every log line written meanwhile. How long the message sat in
 * the stream since it was stored is recorded as `relay.queue.wait_ms`.
 */
export function processMessage<T>(m: JsMsg, t: ProcessTrace, fn: (span: Span) => Promise<T>): Promise<T> {
  const parent = extractContext(m.headers, context.active()).setValue(MESSAGE_LOG_KEY, {
    message_id: t.messageId,
    sender: t.sender,
  } satisfies MessageLogContext);
  const storedMs = m.info.timestampNanos / 1_000_000;
  return tracer().startActiveSpan(
    `process ${m.subject}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.destination.name': m.subject,
        'messaging.consumer.group.name': t.consumer,
        'messaging.destination.subscription.name': t.consumer,
        'messaging.message.body.size': m.data.length,
        'messaging.nats.stream.sequence': m.seq,
        'messaging.nats.delivery.count': m.info.deliveryCount,
        'relay.message.id': t.messageId,
        'relay.sender': t.sender,
        'relay.queue.wait_ms': Math.max(0, Date.now() - storedMs),
      },
    },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (err) {
        fail(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/** Marks a span failed with a described error (never a secret: describe() gives the message only). */
export function fail(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: describe(err) });
}
