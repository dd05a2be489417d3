import { pino, type Logger } from 'pino';
import { logContextFields } from './log-context.js';
import { logDestination } from './log-destination.js';

export type { Logger };

/** Keys whose values never reach a log line, at any depth pino can address. */
const SECRET_KEYS = [
  'password',
  'pass',
  'apiKey',
  'api_key',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'clientSecret',
  'client_secret',
  'authorization',
  'secret',
  'token',
];

export const REDACT_PATHS = [...SECRET_KEYS, ...SECRET_KEYS.map((k) => `*.${k}`), ...SECRET_KEYS.map((k) => `*.*.${k}`)];

export interface LoggerOptions {
  service: string;
  level?: string;
  /** Where lines go; stdout by default. Tests pass a stream to read them. */
  destination?: NodeJS.WritableStream;
}

/**
 * JSON lines with the service name, secrets redacted, and the active trace's `trace_id` and
 * `span_id` (plus `message_id` and `sender` when the work is about one message).
 */
export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: opts.service },
      mixin: logContextFields,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? logDestination(),
  );
}
