import type { Counter } from '@opentelemetry/api';
import { relayInstruments } from '@relay/telemetry';

let attempts: Counter | undefined;

/** Webhook delivery attempts. Attributes: client, outcome (`delivered`, `failed`). */
export function webhookAttempts(): Counter {
  attempts ??= relayInstruments().meter.createCounter('relay_webhook_attempts', {
    description: 'Webhook delivery attempts, by client and outcome (delivered: the receiver answered 2xx)',
  });
  return attempts;
}
