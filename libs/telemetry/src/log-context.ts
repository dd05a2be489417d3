import { context, propagation, trace, type Context } from '@opentelemetry/api';
import { MESSAGE_LOG_KEY, type MessageLogContext } from '@relay/core';

export type { MessageLogContext };

/** `ctx` (default: the active context) with the message's id and sender attached for logging. */
export function withMessage(msg: MessageLogContext, ctx: Context = context.active()): Context {
  return ctx.setValue(MESSAGE_LOG_KEY, msg);
}

/**
 * Fields every log line gets from the active context: the span's `trace_id` and `span_id` (so a
 * log line leads to its trace) and the message's id and sender when the work is about one.
 */
export function logContextFields(): Record<string, string> {
  const ctx = context.active();
  const out: Record<string, string> = {};
  const sc = trace.getSpanContext(ctx);
  if (sc && trace.isSpanContextValid(sc)) {
    out.trace_id = sc.traceId;
    out.span_id = sc.spanId;
  }
  const msg = ctx.getValue(MESSAGE_LOG_KEY) as MessageLogContext | undefined;
  if (msg) {
    out.message_id = msg.message_id;
    if (msg.sender) out.sender = msg.sender;
  }
  return out;
}

/**
 * The W3C `traceparent` of the active span, for a header on the outgoing mail so a provider's logs
 * can be matched with the relay's trace; undefined when nothing is traced.
 */
export function activeTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent || undefined;
}
