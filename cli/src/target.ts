import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ContextsFile, contextsFilePath, findContext, readContextsFile } from './contexts.js';
import { CliError, EXIT } from './errors.js';

type Env = Record<string, string | undefined>;

/** The global options every command takes. */
export interface GlobalOptions {
  address?: string;
  apiKey?: string;
  context?: string;
  tls?: boolean;
  caFile?: string;
}

/** What `npm run stack` leaves in `.relay/stack.json` for the tools that talk to it. */
export interface StackInfo {
  address: string;
  apiKey?: string;
  sender?: string;
  captureDir?: string;
  tlsCaFile?: string;
}

/** Which relay a command talks to, and how. */
export interface Target {
  address: string;
  apiKey: string | undefined;
  /** undefined: plaintext; true: TLS with the system CAs; a path: also trust this PEM CA. */
  tls: true | { caFile: string } | undefined;
  /** Where the address came from, for error messages and `relay context list`. */
  source: string;
  /** Set when the target is the local `npm run stack`. */
  stack: StackInfo | undefined;
}

export const DEFAULT_ADDRESS = '127.0.0.1:50051';

/**
 * Resolves the relay to talk to. The address comes from the first of: --address; --context NAME;
 * RELAY_ADDRESS; the contexts file's current-context; `npm run stack`'s stack file; 127.0.0.1 on
 * RELAY_GRPC_PORT, else 127.0.0.1:50051.
 * The API key from: --api-key; the chosen context's api_key / api_key_env; RELAY_API_KEY; the
 * stack's demo key when talking to that stack (so a key never goes to a relay it was not set for).
 */
export function resolveTarget(opts: GlobalOptions, env: Env, stack: StackInfo | undefined, contexts?: { path: string; file: ContextsFile }): Target {
  const ctxFile = contexts ?? loadContexts(env);
  let address: string;
  let source: string;
  let contextKey: string | undefined;
  let tls: Target['tls'];
  let fromStack: StackInfo | undefined;
  const contextName = opts.context ?? (opts.address || env.RELAY_ADDRESS ? undefined : ctxFile.file['current-context']);
  if (opts.address) {
    address = opts.address;
    source = '--address';
  } else if (contextName) {
    const ctx = findContext(ctxFile.file, contextName, ctxFile.path);
    address = ctx.address;
    source = `context ${ctx.name}`;
    if (ctx.api_key_env) {
      contextKey = env[ctx.api_key_env];
      if (!contextKey && !opts.apiKey) throw new CliError(`context ${ctx.name}: its api_key_env ${ctx.api_key_env} is not set in the environment`, EXIT.usage);
    } else {
      contextKey = ctx.api_key;
    }
    if (ctx.ca_file) tls = { caFile: ctx.ca_file };
    else if (ctx.tls) tls = true;
  } else if (env.RELAY_ADDRESS) {
    address = env.RELAY_ADDRESS;
    source = 'RELAY_ADDRESS';
  } else if (stack) {
    address = stack.address;
    source = 'npm run stack';
  } else {
    // A relay on this machine: ingest's port as the services read it.
    address = env.RELAY_GRPC_PORT ? `127.0.0.1:${env.RELAY_GRPC_PORT}` : DEFAULT_ADDRESS;
    source = 'default';
  }
  if (stack && stack.address === address) fromStack = stack;
  if (!tls && fromStack?.tlsCaFile) tls = { caFile: fromStack.tlsCaFile };
  if (opts.caFile) tls = { caFile: opts.caFile };
  else if (opts.tls && !tls) tls = true;
  if (!/^[^\s/]+:\d{1,5}$/.test(address) && !/^(dns|unix|ipv4|ipv6):/.test(address)) {
    throw new CliError(`${source}: address "${address}": expected HOST:PORT, e.g. relay.campus.example:443`, EXIT.usage);
  }
  const apiKey = opts.apiKey || contextKey || env.RELAY_API_KEY || fromStack?.apiKey || undefined;
  return { address, apiKey, tls, source, stack: fromStack };
}

export function loadContexts(env: Env): { path: string; file: ContextsFile } {
  const path = contextsFilePath(env);
  return { path, file: readContextsFile(path) };
}

/** The stack file of `npm run stack` in the repository this CLI was built in, if there is one. */
export function readStackFile(repoRoot: string): StackInfo | undefined {
  const path = join(repoRoot, '.relay', 'stack.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new CliError(`${path}: not valid JSON; delete it, or run npm run stack again`, EXIT.usage);
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const str = (k: string) => (typeof o[k] === 'string' && o[k] ? (o[k] as string) : undefined);
  const address = str('address');
  if (!address) throw new CliError(`${path}: no "address"; delete it, or run npm run stack again`, EXIT.usage);
  const info: StackInfo = { address };
  for (const k of ['apiKey', 'sender', 'captureDir', 'tlsCaFile'] as const) {
    const s = str(k);
    if (s) info[k] = s;
  }
  return info;
}
