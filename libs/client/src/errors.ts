import { status } from '@grpc/grpc-js';

const MAX_STATUS = Math.max(...Object.values(status).filter((v): v is number => typeof v === 'number'));

/**
 * The gRPC status code of an error thrown by the client (a grpc-js ServiceError), or undefined for
 * anything else. Node system errors also carry `code`, but as a string, so they never match.
 */
export function grpcCode(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' && Number.isInteger(code) && code >= 0 && code <= MAX_STATUS ? code : undefined;
}

/** The status name for a code, e.g. 16 → "UNAUTHENTICATED". */
export function grpcCodeName(code: number): string {
  return status[code] ?? `code ${code}`;
}

/** The server's own text of a gRPC error (`details`), without grpc-js's "16 UNAUTHENTICATED: " prefix. */
export function grpcDetails(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const details = (err as { details?: unknown }).details;
  return typeof details === 'string' ? details : undefined;
}
