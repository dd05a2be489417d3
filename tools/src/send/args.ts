import { basename, extname } from 'node:path';
import { parseArgs } from 'node:util';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { ENV_DEFAULTS } from '@relay/config';
import type { SendMailRequestSchema } from '@relay/proto';
import type { StackInfo } from '../stack/stack-file.js';

type Env = Record<string, string | undefined>;

export const SEND_USAGE = `Usage: npm run send -- --to ADDRESS --subject TEXT [options]

  --sender ID             a sender id from the relay config (default: the demo sender of npm run stack)
  --to, --cc, --bcc ADDR  recipients; repeat for more
  --reply-to ADDR         Reply-To
  --subject TEXT          subject line
  --text TEXT             plain-text body (default: a short greeting when there is no other body)
  --html HTML             HTML body
  --attach PATH           attach a file; repeat for more
  --header NAME=VALUE     an extra header; repeat for more
  --idempotency-key KEY   the same key with the same message returns the first message id
  --send-at TIME          not before this ISO 8601 time, e.g. 2030-01-01T08:00:00Z
  --wait                  follow the message until it is SENT or FAILED (up to 60 s)
  --address HOST:PORT     the relay (default RELAY_ADDRESS, then npm run stack's, then 127.0.0.1:50051)
  --api-key KEY           the caller's key (default RELAY_API_KEY, then npm run stack's demo key)

After \`npm run stack\` in demo mode: npm run send -- --to you@example.test --subject "Hello"`;

/** A mistake in the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function isUsageError(err: unknown): err is UsageError {
  return err instanceof UsageError;
}

export interface SendArgs {
  help: boolean;
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
  address: string | undefined;
  apiKey: string | undefined;
}

export function parseSendArgs(argv: string[]): SendArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        sender: { type: 'string' },
        to: { type: 'string', multiple: true },
        cc: { type: 'string', multiple: true },
        bcc: { type: 'string', multiple: true },
        'reply-to': { type: 'string' },
        subject: { type: 'string' },
        text: { type: 'string' },
        html: { type: 'string' },
        attach: { type: 'string', multiple: true },
        header: { type: 'string', multiple: true },
        'idempotency-key': { type: 'string' },
        'send-at': { type: 'string' },
        wait: { type: 'boolean' },
        address: { type: 'string' },
        'api-key': { type: 'string' },
      },
    }));
  } catch (err) {
    // parseArgs' own message names the option ("Unknown option '--too'").
    throw new UsageError((err as Error).message);
  }
  const args: SendArgs = {
    help: values.help ?? false,
    sender: values.sender,
    to: splitAddresses(values.to),
    cc: splitAddresses(values.cc),
    bcc: splitAddresses(values.bcc),
    replyTo: values['reply-to'],
    subject: values.subject ?? '',
    text: values.text,
    html: values.html,
    attach: values.attach ?? [],
    headers: parseHeaders(values.header ?? []),
    idempotencyKey: values['idempotency-key'],
    sendAt: parseSendAt(values['send-at']),
    wait: values.wait ?? false,
    address: values.address,
    apiKey: values['api-key'],
  };
  if (args.help) return args;
  if (args.to.length + args.cc.length + args.bcc.length === 0) throw new UsageError('no recipient: give at least one --to (or --cc, --bcc)');
  if (!values.subject) throw new UsageError('--subject is required');
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

export interface SendTarget {
  address: string;
  apiKey: string | undefined;
  sender: string;
  /** Where the demo's capture server writes mail, when sending to `npm run stack`'s demo. */
  captureDir: string | undefined;
  /** The CA to trust when the stack serves gRPC over TLS. */
  tlsCaFile: string | undefined;
}

/**
 * Where to send and as whom: flags first, then RELAY_ADDRESS / RELAY_API_KEY, then what
 * `npm run stack` left in `.relay/stack.json` — the latter only when talking to that same stack, so
 * the demo key never goes to a relay named elsewhere.
 */
export function resolveTarget(args: SendArgs, env: Env, stack: StackInfo | undefined): SendTarget {
  const explicitAddress = args.address ?? (env.RELAY_ADDRESS || undefined);
  const fromStack = stack && (explicitAddress === undefined || explicitAddress === stack.address) ? stack : undefined;
  const address = explicitAddress ?? fromStack?.address ?? `127.0.0.1:${env.RELAY_GRPC_PORT || ENV_DEFAULTS.grpcPort}`;
  const sender = args.sender ?? fromStack?.sender;
  if (!sender) throw new UsageError('--sender is required: the id of a sender in the relay config (npm run stack in demo mode makes one called "demo")');
  return {
    address,
    apiKey: args.apiKey ?? (env.RELAY_API_KEY || undefined) ?? fromStack?.apiKey,
    sender,
    captureDir: fromStack?.captureDir,
    tlsCaFile: fromStack?.tlsCaFile,
  };
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
