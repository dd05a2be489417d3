import { timingSafeEqual } from 'node:crypto';
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { ErrorCode, RelayError, type InternalAuth } from '@relay/core';

/**
 * Only the relay's own services may call: with mutual TLS the handshake already required a
 * certificate from the internal CA (checked again here), otherwise the internal token must match.
 */
export function checkInternalCaller(call: Pick<ServerUnaryCall<unknown, unknown>, 'metadata' | 'getAuthContext'>, auth: InternalAuth): void {
  if (auth.kind === 'mtls') {
    if (!call.getAuthContext().sslPeerCertificate) throw new RelayError(ErrorCode.Unauthenticated, 'internal call without a client certificate');
    return;
  }
  const header = call.metadata.get('authorization')[0];
  const presented = Buffer.from(typeof header === 'string' ? header.replace(/^Bearer\s+/i, '') : '');
  const expected = Buffer.from(auth.token);
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    throw new RelayError(ErrorCode.Unauthenticated, 'internal call without a valid service token');
  }
}
