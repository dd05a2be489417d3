import { basename, extname } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { SendMailRequestSchema } from '@relay/proto';
import { UsageError } from '../errors.js';

/** What `relay send` was given, after parsing. */
export interface SendArgs {
  sender: string | undefined;
  to: string[];
  cc: string[];
  bcc: string[];
  replyTo: string | undefined;
  subject: string;
  text: string | undefined;
  html: string | undefined;
  attach: string[];
  headers: Record<string, string>;
  idempotencyKey: string | undefined;
  sendAt: Date | undefined;
  wait: boolean;
}

/** The options as commander hands them over (repeatable ones as arrays). */
export interface SendOptions {
  sender?: string;
  to?: string[];
  cc?: string[];
  bcc?: string[];
  replyTo?: string;
  subject?: string;
  text?: string;
  html?: string;
  attach?: string[];
  header?: string[];
  idempotencyKey?: string;
  sendAt?: string;
  wait?: boolean;
}

export function toSendArgs(o: SendOptions): SendArgs {
  const args: SendArgs = {
    sender: o.sender,
    to: splitAddresses(o.to),
    cc: splitAddresses(o.cc),
    bcc: splitAddresses(o.bcc),
    replyTo: o.replyTo,
    subject: o.subject ?? '',
    text: o.text,
    html: o.html,
    attach: o.attach ?? [],
    headers: parseHeaders(o.header ?? []),
    idempotencyKey: o.idempotencyKey,
    sendAt: parseSendAt(o.sendAt),
    wait: o.wait ?? false,
  };
  if (args.to.length + args.cc.length + args.bcc.length === 0) throw new UsageError('no recipient: give at least one --to (or --cc, --bcc)');
  if (!o.subject) throw new UsageError('--subject is required');
  return args;
}

/** `--to "a@x, b@y"` is two recipients, like `--to a@x --to b@y`. */
function splitAddresses(values: string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
}

function parseHeaders(values: string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    const name = eq < 0 ? '' : v.slice(0, eq).trim();
    if (!name) throw new UsageError(`--header "${v}": expected NAME=VALUE, e.g. --header X-Ticket=42`);
    headers[name] = v.slice(eq + 1);
  }
  return headers;
}

function parseSendAt(v: string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(d.getTime())) {
    throw new UsageError(`--send-at "${v}": expected an ISO 8601 time, e.g. 2030-01-01T08:00:00Z`);
  }
  return d;
}

export interface AttachmentFile {
  path: string;
  content: Uint8Array;
}

/** The SendMail request. Attachment files are read by the caller, so this stays free of I/O. */
export function buildRequest(args: SendArgs, sender: string, files: AttachmentFile[]): MessageInitShape<typeof SendMailRequestSchema> {
  const text = args.text ?? (args.html === undefined && files.length === 0 ? 'Hello from Campus Relay.\n' : undefined);
  return {
    sender,
    to: args.to,
    cc: args.cc,
    bcc: args.bcc,
    replyTo: args.replyTo ?? '',
    subject: args.subject,
    text: text ?? '',
    html: args.html ?? '',
    attachments: files.map((f) => ({ filename: basename(f.path), contentType: contentType(f.path), content: f.content })),
    headers: args.headers,
    idempotencyKey: args.idempotencyKey ?? '',
    sendAt: args.sendAt ? timestampFromDate(args.sendAt) : undefined,
  };
}

const CONTENT_TYPES: Record<string, string> = {
  '.txt': 'text/plain',
  '.csv': 'text/csv',
  '.html': 'text/html',
  '.htm': 'text/html',
  '.ics': 'text/calendar',
  '.json': 'application/json',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.svg': 'image/svg+xml',
  '.docx': 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  '.xlsx': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
};

export function contentType(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}
