import { status } from '@grpc/grpc-js';
import { grpcCode, grpcCodeName, grpcDetails } from '@relay/client';

/** Exit codes scripts can rely on; listed in `relay --help`. */
export const EXIT = {
  ok: 0,
  relay: 1,
  usage: 2,
  notFound: 3,
  denied: 4,
  unavailable: 5,
  conflict: 6,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `Exit codes:
  0  ok
  1  the relay answered with an error (its gRPC status and message are printed), or a check failed
  2  usage error (unknown command or option, bad value, missing file)
  3  not found (NOT_FOUND)
  4  refused: UNAUTHENTICATED (no or unknown API key) or PERMISSION_DENIED (not an admin key)
  5  the relay is unreachable (UNAVAILABLE) or did not answer in time (DEADLINE_EXCEEDED)
  6  conflict: ABORTED or ALREADY_EXISTS (changed since read: etag mismatch; read it again)`;

/** An error the command line reports itself: its message goes to stderr, its code is the exit code. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.relay,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A mistake in the command line itself: exit code 2. */
export class UsageError extends CliError {
  override name = 'UsageError';
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

export function isCliError(err: unknown): err is CliError {
  return err instanceof CliError;
}

/** The exit code for a gRPC status code. */
export function exitCodeForStatus(code: number): ExitCode {
  switch (code) {
    case status.NOT_FOUND:
      return EXIT.notFound;
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return EXIT.denied;
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      return EXIT.unavailable;
    case status.ABORTED:
    case status.ALREADY_EXISTS:
      return EXIT.conflict;
    default:
      return EXIT.relay;
  }
}

/** What to print and which exit code to use for any error a command threw. */
export function describeError(err: unknown, target: { address: string; apiKeySet: boolean } | undefined): { message: string; exitCode: ExitCode } {
  if (isCliError(err)) return { message: err.message, exitCode: err.exitCode };
  const code = grpcCode(err);
  if (code === undefined) return { message: err instanceof Error ? err.message : String(err), exitCode: EXIT.relay };
  const details = grpcDetails(err) || 'no details';
  const where = target ? ` (relay ${target.address})` : '';
  if (code === status.UNAVAILABLE) {
    const at = target ? ` at ${target.address}` : '';
    return { message: `UNAVAILABLE: cannot reach the relay${at}: is it running, and is the address right? (${details})`, exitCode: EXIT.unavailable };
  }
  let hint = '';
  if (code === status.DEADLINE_EXCEEDED) hint = '; the relay did not answer in time (--timeout)';
  if (code === status.UNAUTHENTICATED) {
    hint = target?.apiKeySet ? '; the API key was refused' : '; no API key: set RELAY_API_KEY, --api-key or a context (relay context set)';
  }
  if (code === status.PERMISSION_DENIED) hint = '; AdminService calls need a key of a client with admin: true';
  if (code === status.ABORTED) hint = '; it changed since it was read: read it again and retry';
  return { message: `${grpcCodeName(code)}: ${details}${hint}${where}`, exitCode: exitCodeForStatus(code) };
}
