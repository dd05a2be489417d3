import type { Counter } from '@opentelemetry/api';
import { relayInstruments } from '@relay/telemetry';

let copies: Counter | undefined;

/**
 * Copies to the Sent folder (copy_to_sent). Attributes: sender, outcome (`appended`; `present`:
 * already there, not appended again; `failed`: an attempt failed and is retried; `given_up`;
 * `lost`: the job could not be stored).
 */
export function sentCopies(): Counter {
  copies ??= relayInstruments().meter.createCounter('relay_sent_copies', {
    description: 'Copies of sent messages appended to Sent folders over IMAP, by sender and outcome',
  });
  return copies;
}
