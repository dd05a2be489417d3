import { timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { ErrorCode, RelayError } from '@relay/core';

/** Only the relay's own services, holding the token derived from the master key, may call. */
export function checkInternalToken(metadata: Metadata, token: string): void {
  const header = metadata.get('authorization')[0];
  const presented = Buffer.from(typeof header === 'string' ? header.replace(/^Bearer\s+/i, '') : '');
  const expected = Buffer.from(token);
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    throw new RelayError(ErrorCode.Unauthenticated, 'internal call without a valid service token');
  }
}
