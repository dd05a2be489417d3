import { readFileSync } from 'node:fs';
import { ConfigError, type InternalAuth } from '@relay/core';

type Env = Record<string, string | undefined>;

/** A shorter token is one an attacker could guess. */
export const MIN_INTERNAL_TOKEN_LENGTH = 32;

/**
 * Internal gRPC authentication from RELAY_INTERNAL_CA / _CERT / _KEY (PEM files: mutual TLS) or,
 * failing that, RELAY_INTERNAL_TOKEN / RELAY_INTERNAL_TOKEN_FILE (the token this service presents;
 * for credentials, the senders' token) and, for credentials, RELAY_INTERNAL_ADMIN_TOKEN / _FILE
 * (ingest's token for the admin calls). Undefined when none is set.
 */
export function readInternalAuth(env: Env): InternalAuth | undefined {
  const tls = ['RELAY_INTERNAL_CA', 'RELAY_INTERNAL_CERT', 'RELAY_INTERNAL_KEY'] as const;
  const given = tls.filter((n) => env[n]);
  if (given.length > 0) {
    const missing = tls.filter((n) => !env[n]);
    if (missing.length > 0)
      throw new ConfigError(`${missing.join(', ')}: required with ${given.join(', ')} (internal mutual TLS needs the CA, a certificate and its key)`);
    const [ca, cert, key] = tls.map((n) => readPem(n, env[n]!));
    return { kind: 'mtls', ca: ca!, cert: cert!, key: key! };
  }
  const token = readToken(env, 'RELAY_INTERNAL_TOKEN');
  if (!token) return undefined;
  const adminToken = readToken(env, 'RELAY_INTERNAL_ADMIN_TOKEN');
  return adminToken ? { kind: 'token', token, adminToken } : { kind: 'token', token };
}

/** A token from `NAME` or the file `NAME_FILE`. */
function readToken(env: Env, base: string): string | undefined {
  let token = env[base];
  let name = base;
  if (!token && env[`${base}_FILE`]) {
    name = `${base}_FILE`;
    token = readFile(name, env[name]!).trim();
  }
  if (!token) return undefined;
  if (token.length < MIN_INTERNAL_TOKEN_LENGTH) {
    throw new ConfigError(`${name}: the internal token must be at least ${MIN_INTERNAL_TOKEN_LENGTH} characters; make one with: openssl rand -base64 32`);
  }
  return token;
}

/** The internal authentication, or a ConfigError saying how to set one up. */
export function requireInternalAuth(auth: InternalAuth | undefined, service: string): InternalAuth {
  if (auth) return auth;
  throw new ConfigError(
    `${service} needs internal authentication toward the credentials service: RELAY_INTERNAL_CA, RELAY_INTERNAL_CERT and RELAY_INTERNAL_KEY (mutual TLS), or RELAY_INTERNAL_TOKEN / RELAY_INTERNAL_TOKEN_FILE (openssl rand -base64 32)`,
  );
}

function readFile(name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
}

function readPem(name: string, path: string): string {
  const text = readFile(name, path);
  if (!text.includes('-----BEGIN ')) throw new ConfigError(`${name}: ${path} holds no PEM data`);
  return text;
}
