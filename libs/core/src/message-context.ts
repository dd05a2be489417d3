/** The message a piece of work is about, carried in the OpenTelemetry context for log lines. */
export interface MessageLogContext {
  message_id: string;
  sender?: string;
}

/**
 * The OpenTelemetry context key it is carried under (context keys are symbols): the bus sets it
 * while a consumed message is processed, the logger reads it. Kept here so neither depends on the other.
 */
export const MESSAGE_LOG_KEY: symbol = Symbol('campus-relay.message');
