import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { toGrpcError, type CredentialsClient } from '@relay/proto';
import { ErrorCode, RelayError } from '@relay/core';
import { AuthCache } from './auth-cache.js';

const failing = (err: Partial<ServiceError>) =>
  ({ getSmtpAuth: () => Promise.reject(Object.assign(new Error(err.details), err)) }) as unknown as CredentialsClient;

describe('AuthCache errors', () => {
  it("passes on the credentials service's own answer as it is, without blaming that service", async () => {
    const answer = toGrpcError(
      new RelayError(ErrorCode.Unavailable, 'sender "library": cannot reach the identity platform at login.microsoftonline.com: DNS lookup failed (ENOTFOUND)'),
    );
    const err = await new AuthCache(failing(answer as ServiceError)).get('library').then(
      () => undefined,
      (e: Error) => e,
    );
    if (!err) throw new Error('expected a failure');
    expect(err.message).toBe('sender "library": cannot reach the identity platform at login.microsoftonline.com: DNS lookup failed (ENOTFOUND)');
  });

  it('says the credentials service is unavailable when the call did not reach it', async () => {
    const err = await new AuthCache(
      failing({ code: status.UNAVAILABLE, details: 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:50052', metadata: new Metadata() }),
    )
      .get('library')
      .then(
        () => undefined,
        (e: Error) => e,
      );
    if (!err) throw new Error('expected a failure');
    expect(err.message).toBe('credentials service unavailable: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:50052');
  });
});
