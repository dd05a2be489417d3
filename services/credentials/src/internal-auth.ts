import { timingSafeEqual } from 'node:crypto';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { ErrorCode, RelayError, type InternalAuth } from '@relay/core';

/** Who may make one internal call: a role for tokens, certificate names for mutual TLS. */
export interface CallerPolicy {
  /** `sender` calls take the senders' token; `admin` calls ingest's (RELAY_INTERNAL_ADMIN_TOKEN) when one is set. */
  role: 'sender' | 'admin';
  /** The certificate common names allowed, e.g. `relay-smtp-sender`. */
  names: readonly string[];
}

/** Each call for the one service that needs it: ingest fetches no password, a sender starts no consent. */
export const CALLERS = {
  getSmtpAuth: { role: 'sender', names: ['relay-smtp-sender'] },
  getGraphToken: { role: 'sender', names: ['relay-graph-sender'] },
  beginConsent: { role: 'admin', names: ['relay-ingest'] },
  // The browser comes back to ingest's public port; only ingest relays it.
  completeConsent: { role: 'admin', names: ['relay-ingest'] },
  testSender: { role: 'admin', names: ['relay-ingest'] },
  setSenderSecret: { role: 'admin', names: ['relay-ingest'] },
  getCredentialStatus: { role: 'admin', names: ['relay-ingest'] },
  createWebhookSecret: { role: 'admin', names: ['relay-ingest'] },
  // Ingest delivers the webhooks; no sender signs anything.
  signWebhook: { role: 'admin', names: ['relay-ingest'] },
} as const satisfies Record<string, CallerPolicy>;

type Call = Pick<ServerUnaryCall<unknown, unknown>, 'metadata' | 'getAuthContext'>;

/**
 * Only the relay's own services may call, each only what it needs: with mutual TLS the handshake
 * already required a certificate from the internal CA, and its common name must be one the call
 * allows; otherwise the caller's token must be the one for the call's role.
 */
export function checkInternalCaller(call: Call, auth: InternalAuth, policy: CallerPolicy): void {
  if (auth.kind === 'mtls') {
    const cert = call.getAuthContext().sslPeerCertificate;
    if (!cert) throw new RelayError(ErrorCode.Unauthenticated, 'internal call without a client certificate');
    const name = cert.subject?.CN;
    if (typeof name !== 'string' || !policy.names.includes(name)) {
      throw new RelayError(ErrorCode.PermissionDenied, `internal call refused for the certificate of "${String(name)}" (allowed: ${policy.names.join(', ')})`);
    }
    return;
  }
  const header = call.metadata.get('authorization')[0];
  const presented = Buffer.from(typeof header === 'string' ? header.replace(/^Bearer\s+/i, '') : '');
  const expected = Buffer.from(policy.role === 'admin' ? (auth.adminToken ?? auth.token) : auth.token);
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    throw new RelayError(ErrorCode.Unauthenticated, 'internal call without a valid service token');
  }
}
