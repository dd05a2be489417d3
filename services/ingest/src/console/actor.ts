import { Metadata } from '@grpc/grpc-js';
import type { ClientConfig } from '@relay/config';

// Metadata made here, in process, for one console request: a call from the network carries
// metadata grpc-js made, which is never in this map, so no header can claim to be a person.
const actors = new WeakMap<Metadata, ClientConfig>();

/**
 * Call metadata that AdminService's handlers authenticate as a person signed in to the console:
 * no API key, and the registry's audit (`updated_by`) names the person.
 */
export function actingAs(person: { email: string; admin: boolean }): Metadata {
  const md = new Metadata();
  actors.set(md, {
    name: `${person.email} (console)`,
    apiKey: undefined,
    senders: [],
    admin: person.admin,
    limits: { messagesPerSecond: undefined, bytesPerSecond: undefined, maxStoredMessages: undefined, maxStoredBytes: undefined, dailyRecipients: undefined },
  });
  return md;
}

/** The person a console request acts as, for metadata made by actingAs only. */
export function consoleActor(metadata: Metadata): ClientConfig | undefined {
  return actors.get(metadata);
}
