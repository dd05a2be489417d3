import { styleText } from 'node:util';
import { type DescMessage, type MessageShape, toJson } from '@bufbuild/protobuf';
import { type Timestamp, timestampDate } from '@bufbuild/protobuf/wkt';
import Table from 'cli-table3';
import { stringify } from 'yaml';
import { UsageError } from './errors.js';

export const OUTPUT_FORMATS = ['table', 'wide', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseOutputFormat(value: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new UsageError(`-o "${value}": expected one of ${OUTPUT_FORMATS.join(', ')}`);
}

export function isStructured(format: OutputFormat): format is 'json' | 'yaml' {
  return format === 'json' || format === 'yaml';
}

type Color = Parameters<typeof styleText>[0];

/** Where a command writes; colours only when the stream is a terminal and NO_COLOR is unset. */
export interface Output {
  format: OutputFormat;
  out(line?: string): void;
  err(line?: string): void;
  /** Colours text for stdout (styleText checks the TTY and NO_COLOR itself). */
  color(format: Color, text: string): string;
  /** The same for stderr. */
  colorErr(format: Color, text: string): string;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
}

export function createOutput(format: OutputFormat): Output {
  return {
    format,
    out: (line = '') => process.stdout.write(`${line}\n`),
    err: (line = '') => process.stderr.write(`${line}\n`),
    color: (f, text) => styleText(f, text, { stream: process.stdout }),
    colorErr: (f, text) => styleText(f, text, { stream: process.stderr }),
    stdoutIsTTY: Boolean(process.stdout.isTTY),
    stderrIsTTY: Boolean(process.stderr.isTTY),
  };
}

/** Proto JSON of a message (field names in lowerCamelCase, enums by name, every field present). */
export function protoJson<D extends DescMessage>(schema: D, msg: MessageShape<D>): unknown {
  return toJson(schema, msg, { alwaysEmitImplicit: true });
}

/** Prints a message as JSON or YAML (for -o json / -o yaml). */
export function printMessage<D extends DescMessage>(o: Output, schema: D, msg: MessageShape<D>): void {
  printValue(o, protoJson(schema, msg));
}

export function printValue(o: Output, value: unknown): void {
  if (o.format === 'yaml') o.out(stringify(value).trimEnd());
  else o.out(JSON.stringify(value, null, 2));
}

/** A borderless table with upper-case headers, like kubectl's. */
export function printTable(o: Output, head: string[], rows: string[][]): void {
  const table = new Table({
    head: head.map((h) => o.color('bold', h.toUpperCase())),
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 3, compact: true },
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '',
    },
  });
  table.push(...rows);
  for (const line of table.toString().split('\n')) o.out(line.trimEnd());
}

/** A timestamp as "2030-01-01 08:00:00Z" (UTC, whole seconds); "-" when unset. */
export function formatTime(ts: Timestamp | undefined): string {
  if (!ts) return '-';
  return timestampDate(ts)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

/** Cuts text to `max` characters with an ellipsis, on one line. */
export function truncate(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}
