import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { createRelayClient, type RelayClient } from '@relay/client';
import { MessageState } from '@relay/proto';
import { CliError, EXIT, UsageError } from './errors.js';
import { parseDuration } from './duration.js';
import { createOutput, type Output, parseOutputFormat } from './output.js';
import { type GlobalOptions, resolveTarget, type StackInfo, type Target } from './target.js';

type Env = Record<string, string | undefined>;

const MiB = 1024 * 1024;

/**
 * Largest gRPC message this CLI sends or accepts. The relay takes up to 150 MiB for a Graph sender
 * (upload sessions), plus framing; set here explicitly so a message the relay would take is never
 * refused by the CLI's own limit.
 */
export const MAX_GRPC_MESSAGE_BYTES = 160 * MiB;

/** How long one call may take unless --timeout says otherwise. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** What every command needs, built from the global options on first use. */
export interface Runtime {
  env: Env;
  output: Output;
  target: Target;
  client: RelayClient;
  /** Per-call deadline in ms (--timeout). */
  timeoutMs: number;
  /** Call options for one unary call. */
  call(): { deadlineMs: number };
}

export interface RuntimeDeps {
  env: Env;
  stack: () => StackInfo | undefined;
}

interface AllOptions extends GlobalOptions {
  output: string;
  timeout: string;
}

/** Builds the runtime for a command from its options; the client is opened lazily and closed by close(). */
export function createRuntimeFactory(deps: RuntimeDeps) {
  let client: RelayClient | undefined;
  let lastTarget: Target | undefined;
  const forCommand = (cmd: Command): Runtime => {
    const opts = cmd.optsWithGlobals<AllOptions>();
    const output = createOutput(parseOutputFormat(opts.output));
    const timeoutMs = parseDuration(opts.timeout, '--timeout');
    let target: Target | undefined;
    const getTarget = () => {
      target ??= resolveTarget(opts, deps.env, deps.stack());
      lastTarget = target;
      return target;
    };
    return {
      env: deps.env,
      output,
      timeoutMs,
      get target() {
        return getTarget();
      },
      get client() {
        if (!client) {
          const t = getTarget();
          client = createRelayClient({
            address: t.address,
            ...(t.apiKey ? { apiKey: t.apiKey } : {}),
            ...(t.tls ? { tls: t.tls === true ? true : { ca: readCa(t.tls.caFile) } } : {}),
            maxMessageBytes: MAX_GRPC_MESSAGE_BYTES,
          });
        }
        return client;
      },
      call: () => ({ deadlineMs: timeoutMs }),
    };
  };
  return {
    forCommand,
    /** The target of the last command, for error messages. */
    lastTarget: () => lastTarget,
    close: () => client?.close(),
  };
}

function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`CA file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.usage, { cause: err });
  }
}

const STATE_NAMES = Object.entries(MessageState)
  .filter((e): e is [string, number] => typeof e[1] === 'number' && e[1] !== MessageState.UNSPECIFIED)
  .map(([name, value]) => ({ name, value }));

/** "failed", "FAILED" or "MESSAGE_STATE_FAILED" → MessageState.FAILED. */
export function parseState(value: string): MessageState {
  const v = value
    .trim()
    .toUpperCase()
    .replace(/^MESSAGE_STATE_/, '');
  const found = STATE_NAMES.find((s) => s.name === v);
  if (!found) throw new UsageError(`--state "${value}": expected one of ${STATE_NAMES.map((s) => s.name.toLowerCase()).join(', ')}`);
  return found.value;
}

/** "FAILED", "SENT", …: the state without its MESSAGE_STATE_ prefix. */
export function stateName(state: MessageState): string {
  return MessageState[state] ?? `state ${state}`;
}

/** Reads all of stdin, up to `max` bytes. */
export async function readStdin(max: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > max) throw new UsageError(`${what}: more than ${max} bytes on stdin`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
