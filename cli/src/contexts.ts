import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { CliError, EXIT } from './errors.js';

/** One named relay to talk to, as kept in the contexts file. */
export interface RelayContext {
  name: string;
  address: string;
  /** The API key itself (the file is written 0600); prefer api_key_env. */
  api_key?: string;
  /** Name of an environment variable holding the API key. */
  api_key_env?: string;
  /** PEM file of a CA to trust; implies TLS. */
  ca_file?: string;
  /** TLS with the system's trusted CAs. */
  tls?: boolean;
}

export interface ContextsFile {
  'current-context'?: string;
  contexts: RelayContext[];
}

type Env = Record<string, string | undefined>;

const MAX_FILE_BYTES = 1024 * 1024;
const MAX_CONTEXTS = 1_000;
const CONTEXT_KEYS = new Set(['name', 'address', 'api_key', 'api_key_env', 'ca_file', 'tls']);

/** `$XDG_CONFIG_HOME/campus-relay/config.yaml`, else `~/.config/campus-relay/config.yaml`. */
export function contextsFilePath(env: Env): string {
  const base = env.XDG_CONFIG_HOME?.startsWith('/') ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), '.config');
  return join(base, 'campus-relay', 'config.yaml');
}

/** The contexts file; an empty one when it does not exist. A broken file is an error naming the key. */
export function readContextsFile(path: string): ContextsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { contexts: [] };
    throw new CliError(`${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.usage, { cause: err });
  }
  if (text.length > MAX_FILE_BYTES) throw new CliError(`${path}: larger than 1 MiB; is it the right file?`, EXIT.usage);
  let raw: unknown;
  try {
    raw = parse(text) ?? {};
  } catch (err) {
    throw new CliError(`${path}: not valid YAML (${(err as Error).message.split('\n')[0]})`, EXIT.usage, { cause: err });
  }
  return validate(raw, path);
}

function validate(raw: unknown, path: string): ContextsFile {
  const bad = (key: string, why: string) => new CliError(`${path}: ${key}: ${why}`, EXIT.usage);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('(top)', 'expected a mapping with current-context and contexts');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'current-context' && k !== 'contexts') throw bad(k, 'unknown key (expected current-context, contexts)');
  const file: ContextsFile = { contexts: [] };
  if (o['current-context'] !== undefined && o['current-context'] !== null) {
    if (typeof o['current-context'] !== 'string') throw bad('current-context', 'expected a context name');
    file['current-context'] = o['current-context'];
  }
  const list = o.contexts ?? [];
  if (!Array.isArray(list)) throw bad('contexts', 'expected a list');
  if (list.length > MAX_CONTEXTS) throw bad('contexts', `at most ${MAX_CONTEXTS}`);
  list.forEach((c: unknown, i) => {
    const at = `contexts[${i}]`;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) throw bad(at, 'expected a mapping with name and address');
    const e = c as Record<string, unknown>;
    for (const k of Object.keys(e)) if (!CONTEXT_KEYS.has(k)) throw bad(`${at}.${k}`, `unknown key (expected ${[...CONTEXT_KEYS].join(', ')})`);
    const str = (k: string, required = false): string | undefined => {
      const v = e[k];
      if (v === undefined || v === null) {
        if (required) throw bad(`${at}.${k}`, 'required');
        return undefined;
      }
      if (typeof v !== 'string' || !v) throw bad(`${at}.${k}`, 'expected a non-empty string');
      return v;
    };
    const ctx: RelayContext = { name: str('name', true)!, address: str('address', true)! };
    for (const k of ['api_key', 'api_key_env', 'ca_file'] as const) {
      const v = str(k);
      if (v !== undefined) ctx[k] = v;
    }
    if (e.tls !== undefined) {
      if (typeof e.tls !== 'boolean') throw bad(`${at}.tls`, 'expected true or false');
      ctx.tls = e.tls;
    }
    if (ctx.api_key && ctx.api_key_env) throw bad(at, 'give api_key or api_key_env, not both');
    if (file.contexts.some((x) => x.name === ctx.name)) throw bad(`${at}.name`, `"${ctx.name}" is defined twice`);
    file.contexts.push(ctx);
  });
  return file;
}

/** Writes the file atomically, readable by its owner only (it may hold an API key). */
export function writeContextsFile(path: string, file: ContextsFile): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, stringify(file), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function findContext(file: ContextsFile, name: string, path: string): RelayContext {
  const ctx = file.contexts.find((c) => c.name === name);
  if (!ctx) {
    const known = file.contexts.map((c) => c.name).join(', ') || 'none';
    throw new CliError(`no context "${name}" in ${path} (known: ${known}); add one with: relay context set ${name} --address HOST:PORT`, EXIT.usage);
  }
  return ctx;
}
