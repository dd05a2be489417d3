import { readFileSync } from 'node:fs';
import { ConfigError } from '@relay/core';

/**
 * A secret value. It never prints itself: logs, JSON and errors show "[secret]".
 * `reveal()` is the only way to the plaintext.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  /** False for a reference this service was not meant to resolve (see UnresolvedSecret). */
  get resolved(): boolean {
    return true;
  }
  toString() {
    return '[secret]';
  }
  toJSON() {
    return '[secret]';
  }
  [Symbol.for('nodejs.util.inspect.custom')]() {
    return '[secret]';
  }
}

/**
 * A secret left unresolved: only the credentials service reads SMTP passwords, OAuth client
 * secrets and refresh tokens, so the other services load the config without them (and run
 * without their environment variables and files). `reveal()` throws instead of returning a value.
 */
export class UnresolvedSecret extends Secret {
  /** The config key, e.g. `senders[0].smtp.auth.password`. */
  readonly key: string;
  /** The reference: `env:NAME`, `file:PATH`, or `literal` (a literal's value is not kept). */
  readonly ref: string;
  constructor(key: string, ref: string) {
    super('');
    this.key = key;
    this.ref = ref.startsWith('env:') || ref.startsWith('file:') ? ref : 'literal';
  }
  override reveal(): string {
    throw new ConfigError(`${this.key}: this service does not read secrets (only relay-credentials does)`);
  }
  override get resolved(): boolean {
    return false;
  }
}

/**
 * A secret of a sender managed through the API that has not been set yet: the sender exists, and
 * using it says what to do.
 */
export class MissingSecret extends Secret {
  readonly #message: string;
  constructor(sender: string, field: string) {
    super('');
    this.#message = `sender "${sender}": ${field} is not set; set it with SetSenderSecret (relay senders set-secret ${sender} ${field})`;
  }
  override reveal(): string {
    throw new ConfigError(this.#message);
  }
}

/** Resolves a config secret reference: a literal, `env:NAME` or `file:PATH`. `key` names it in errors. */
export function resolveSecret(ref: string, key: string, env: Record<string, string | undefined>): Secret {
  if (ref.startsWith('sealed:')) {
    throw new ConfigError(`${key}: "sealed:" stands for a secret set through the operations API; in relay.yaml write env:NAME, file:PATH or the value`);
  }
  // relay.yaml is not run through a shell: `$VAR` would otherwise become the secret itself.
  const shellVar = /^\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))$/.exec(ref);
  if (shellVar) {
    throw new ConfigError(`${key}: "${ref}" looks like a shell variable; write env:${shellVar[1] ?? shellVar[2]} to read it from the environment`);
  }
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const inner = /^\$\{?([A-Za-z_]\w*)\}?$/.exec(name);
    if (inner) throw new ConfigError(`${key}: write env:${inner[1]}, without the $ (env: takes the variable's name)`);
    const value = env[name];
    if (value === undefined || value === '') {
      throw new ConfigError(`${key}: environment variable ${name} is not set`);
    }
    return new Secret(value);
  }
  if (ref.startsWith('file:')) {
    const path = ref.slice(5);
    let value: string;
    try {
      value = readFileSync(path, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`${key}: cannot read secret file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    if (value === '') throw new ConfigError(`${key}: secret file ${path} is empty`);
    return new Secret(value);
  }
  return new Secret(ref);
}

/** Every UnresolvedSecret in a loaded config (or any part of one), in document order. */
export function unresolvedSecrets(value: unknown): UnresolvedSecret[] {
  if (value instanceof UnresolvedSecret) return [value];
  if (value instanceof Secret || value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap((v) => unresolvedSecrets(v));
}
