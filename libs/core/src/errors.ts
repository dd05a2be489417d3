/**
 * The relay's error type. The code decides how the error crosses a boundary: converted to a gRPC
 * status in one function at the edge, and mapped by bus consumers to ack, retry or fail.
 */
export const ErrorCode = {
  InvalidArgument: 'invalid_argument',
  Unauthenticated: 'unauthenticated',
  PermissionDenied: 'permission_denied',
  NotFound: 'not_found',
  AlreadyExists: 'already_exists',
  /** A change made against a version that is no longer current (an etag mismatch). */
  Aborted: 'aborted',
  /** A client's rate or quota, or the store's limit; the message names it. */
  ResourceExhausted: 'resource_exhausted',
  Unavailable: 'unavailable',
  FailedPrecondition: 'failed_precondition',
  Config: 'config',
  Internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class RelayError extends Error {
  override name = 'RelayError';
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isRelayError(err: unknown): err is RelayError {
  return err instanceof RelayError;
}

/** A configuration problem: the service must not start. The message names the key. */
export class ConfigError extends RelayError {
  override name = 'ConfigError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Config, message, options);
  }
}

export function isConfigError(err: unknown): err is ConfigError {
  return err instanceof ConfigError;
}

/**
 * The outcome of a delivery attempt that did not succeed. `retryable` decides between RETRYING
 * (backoff, then another attempt) and FAILED. `detail` is the provider's own reply text.
 */
export class DeliveryError extends Error {
  override name = 'DeliveryError';
  readonly retryable: boolean;
  /** Seconds the provider asked us to wait (Retry-After), when it said so. */
  readonly retryAfterMs: number | undefined;
  /** A plain-language fix for a known failure. */
  readonly remedy: string | undefined;
  /**
   * Nothing was sent: the attempt was given up before it reached the provider because the
   * service is stopping. The message goes back to the queue as it was (no attempt is counted).
   */
  readonly notStarted: boolean;
  constructor(message: string, opts: { retryable: boolean; retryAfterMs?: number; remedy?: string; cause?: unknown; notStarted?: boolean }) {
    super(message, { cause: opts.cause });
    this.retryable = opts.retryable;
    this.retryAfterMs = opts.retryAfterMs;
    this.remedy = opts.remedy;
    this.notStarted = opts.notStarted ?? false;
  }
}

export function isDeliveryError(err: unknown): err is DeliveryError {
  return err instanceof DeliveryError;
}

export function retryable(message: string, opts: { retryAfterMs?: number; remedy?: string; cause?: unknown } = {}) {
  return new DeliveryError(message, { ...opts, retryable: true });
}

/** The attempt did not start (the service is stopping); the message is handed back untouched. */
export function notStarted(message: string) {
  return new DeliveryError(message, { retryable: true, notStarted: true });
}

export function permanent(message: string, opts: { remedy?: string; cause?: unknown } = {}) {
  return new DeliveryError(message, { ...opts, retryable: false });
}

/** A short description of any thrown value, without its stack. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
