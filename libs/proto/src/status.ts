import { Metadata, status, type ServerErrorResponse } from '@grpc/grpc-js';
import { ErrorCode, isRelayError, type ErrorCode as Code } from '@relay/core';

const GRPC_STATUS: Record<Code, status> = {
  [ErrorCode.InvalidArgument]: status.INVALID_ARGUMENT,
  [ErrorCode.Unauthenticated]: status.UNAUTHENTICATED,
  [ErrorCode.PermissionDenied]: status.PERMISSION_DENIED,
  [ErrorCode.NotFound]: status.NOT_FOUND,
  [ErrorCode.AlreadyExists]: status.ALREADY_EXISTS,
  [ErrorCode.Aborted]: status.ABORTED,
  [ErrorCode.ResourceExhausted]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.Unavailable]: status.UNAVAILABLE,
  [ErrorCode.FailedPrecondition]: status.FAILED_PRECONDITION,
  [ErrorCode.Config]: status.FAILED_PRECONDITION,
  [ErrorCode.Internal]: status.INTERNAL,
};

/** Trailer on every error a relay service answers with: its ErrorCode. */
export const ANSWERED = 'relay-error';

/** True when the service called answered with this error itself (not unreachable, not timed out on the way). */
export function answeredByRelay(err: { metadata?: Metadata | undefined }): boolean {
  return (err.metadata?.get(ANSWERED).length ?? 0) > 0;
}

/**
 * The one place an error becomes a gRPC status. RelayErrors keep their message (written for the
 * caller); anything else is an internal error whose details stay in the server's log.
 */
export function toGrpcError(err: unknown): ServerErrorResponse {
  const e = new Error() as ServerErrorResponse;
  if (isRelayError(err) && err.code !== ErrorCode.Internal) {
    e.code = GRPC_STATUS[err.code];
    e.details = err.message;
  } else {
    e.code = status.INTERNAL;
    e.details = 'internal error; see the relay logs';
  }
  e.message = e.details;
  e.metadata = new Metadata();
  // Tells a caller the relay service answered (rather than the call failing on the way to it).
  e.metadata.set(ANSWERED, isRelayError(err) ? err.code : ErrorCode.Internal);
  return e;
}
