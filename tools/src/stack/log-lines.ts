/** Reading the pino JSON lines the services write, for the stack's terminal. */
import { readyPorts } from '@relay/testkit/service-process';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const WARN = 40;

export interface LogRecord {
  level?: number;
  msg?: string;
  ports?: Record<string, number>;
  err?: { message?: string; type?: string };
  [key: string]: unknown;
}

/** The JSON record of a line, or undefined for plain text (a crash trace, a stray console.log). */
export function parseLogLine(line: string): LogRecord | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as LogRecord) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The line as the stack prints it, `[ingest] message`, or undefined when it is not shown: by default
 * only warnings and worse, ready lines and plain text (which is usually a crash) are shown.
 */
export function formatLogLine(name: string, line: string, opts: { verbose: boolean; width?: number }): string | undefined {
  const tag = `[${name}]`.padEnd((opts.width ?? 0) + 2);
  const record = parseLogLine(line);
  if (!record) return line.trim() ? `${tag} ${line}` : undefined;
  const ports = readyPorts(line);
  if (ports) {
    const list = Object.entries(ports).map(([k, v]) => `${k} ${v}`);
    return `${tag} ready${list.length ? ` (${list.join(', ')})` : ''}`;
  }
  const level = typeof record.level === 'number' ? record.level : 30;
  if (level < WARN && !opts.verbose) return undefined;
  const label = level === 30 ? '' : `${LEVELS[level] ?? `LEVEL ${level}`}: `;
  const err = record.err?.message && record.err.message !== record.msg ? `: ${record.err.message}` : '';
  return `${tag} ${label}${record.msg ?? ''}${err}`;
}
