import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { ErrorCode, RelayError } from '@relay/core';
import type { ClientConfig } from '@relay/config';
import { consoleActor } from './console/actor.js';

export interface Authenticator {
  /** The client whose key is in `authorization: Bearer <key>`; UNAUTHENTICATED otherwise. */
  authenticate(metadata: Metadata): ClientConfig;
  /** PERMISSION_DENIED unless the client may send as `sender`. */
  authorizeSender(client: ClientConfig, sender: string): void;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/**
 * Keys are held only as SHA-256 digests and compared in constant time against every client, so
 * neither the plaintext nor the timing of a lookup tells anything about the configured keys.
 */
export function createAuthenticator(clients: ClientConfig[], now: () => number = Date.now): Authenticator {
  // relay.yaml's api_key, and the keys the relay made for clients of the registry (digests only).
  const digests = clients.flatMap((c) => [
    ...(c.apiKey ? [{ client: c, digest: sha256(c.apiKey.reveal()), expiresAt: Infinity }] : []),
    ...(c.keys ?? []).map((k) => ({ client: c, digest: Buffer.from(k.digest, 'hex'), expiresAt: k.expiresAt ?? Infinity })),
  ]);
  return {
    authenticate(metadata) {
      const person = consoleActor(metadata);
      if (person) return person;
      const header = metadata.get('authorization')[0];
      const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      if (!m) throw new RelayError(ErrorCode.Unauthenticated, 'missing API key: send metadata "authorization: Bearer <api key>"');
      const presented = sha256(m[1]!);
      let found: (typeof digests)[number] | undefined;
      for (const d of digests) if (d.digest.length === presented.length && timingSafeEqual(d.digest, presented)) found = d;
      if (!found) throw new RelayError(ErrorCode.Unauthenticated, 'unknown API key');
      if (found.expiresAt <= now()) throw new RelayError(ErrorCode.Unauthenticated, `this API key of client "${found.client.name}" expired (it was rotated)`);
      return found.client;
    },
    authorizeSender(client, sender) {
      if (!sender) throw new RelayError(ErrorCode.InvalidArgument, 'sender: required (a configured sender id)');
      if (!client.senders.includes(sender)) {
        throw new RelayError(ErrorCode.PermissionDenied, `client "${client.name}" may not send as "${sender}"`);
      }
    },
  };
}

/** The caller's client, which must be an admin client (AdminService); PERMISSION_DENIED otherwise. */
export function requireAdmin(auth: Authenticator, metadata: Metadata): ClientConfig {
  const client = auth.authenticate(metadata);
  if (!client.admin) throw new RelayError(ErrorCode.PermissionDenied, `client "${client.name}" is not an admin client (admin: true)`);
  return client;
}
