import { loadConfigFile, unresolvedSecrets } from '@relay/config';
import type { InternalTls } from './internal-ca.js';
import type { ServiceName } from '@relay/core';
import { stackServiceEnv, type StackSettings } from './services.js';

type Env = Record<string, string | undefined>;

/** The environment variables relay.yaml's `env:` secrets name: the callers' (ingest checks them) and the rest. */
export interface SecretEnvNames {
  callers: string[];
  others: string[];
}

/** Reads relay.yaml without resolving anything and lists the variables its secrets come from. */
export function secretEnvNames(configPath: string): SecretEnvNames {
  const names: SecretEnvNames = { callers: [], others: [] };
  for (const s of unresolvedSecrets(loadConfigFile(configPath, {}, { resolveSecrets: 'none' }))) {
    if (!s.ref.startsWith('env:')) continue;
    // The console's client secret is ingest's too (it signs people in).
    (s.key.startsWith('clients[') || s.key.startsWith('console.') ? names.callers : names.others).push(s.ref.slice(4));
  }
  return names;
}

// What a service other than credentials may inherit from the operator's shell: the system's
// basics, Node's, telemetry's and the relay's own settings. Anything else (a cloud key, a
// password exported for some other tool) stays with the shell.
const PASSED =
  /^(PATH|HOME|USER|LOGNAME|LANG|LANGUAGE|TZ|TMPDIR|TERM|LC_\w+|NODE_\w+|OTEL_\w+|LOG_LEVEL|NATS_\w+|REDIS_URL|RELAY_\w+|SSL_CERT_FILE|SSL_CERT_DIR|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)$/;
/** Only credentials decrypts stored secrets. */
const MASTER_KEYS = ['RELAY_MASTER_KEY', 'RELAY_MASTER_KEY_OLD'];
/** Only the services that call credentials authenticate to it. */
const INTERNAL_AUTH = /^RELAY_INTERNAL_/;
/** The token credentials accepts from ingest: credentials' alone (ingest presents it as its RELAY_INTERNAL_TOKEN). */
const ADMIN_TOKEN = /^RELAY_INTERNAL_ADMIN_TOKEN(_FILE)?$/;
/** The console's cookie key and demo sign-in: ingest's alone, credentials' included. */
const CONSOLE_SECRETS = /^RELAY_CONSOLE_(SESSION_KEY|DEMO_TOKEN)$/;
/** The public ports' TLS pair: ingest's (and credentials', which gets everything). */
const PUBLIC_TLS = /^RELAY_TLS_(CERT|KEY)$/;

/**
 * The environment one service of the stack starts with: credentials gets it all but the callers'
 * API keys (it reads the senders' secrets and the master key); ingest only the callers' API keys
 * among the secrets; scheduler and the senders none, and no master key, so a compromised one has
 * no secret in its /proc/<pid>/environ to give away.
 */
export function scopeServiceEnv(name: ServiceName, env: Env, secrets: SecretEnvNames): Env {
  if (name === 'credentials') {
    return Object.fromEntries(Object.entries(env).filter(([k]) => (!secrets.callers.includes(k) || secrets.others.includes(k)) && !CONSOLE_SECRETS.test(k)));
  }
  const keep = new Set(name === 'ingest' ? secrets.callers : []);
  const drop = new Set([...MASTER_KEYS, ...secrets.callers, ...secrets.others].filter((n) => !keep.has(n)));
  const out: Env = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || drop.has(k)) continue;
    if (!PASSED.test(k) && !keep.has(k)) continue;
    if (name === 'scheduler' && INTERNAL_AUTH.test(k)) continue;
    if (ADMIN_TOKEN.test(k) || (name !== 'ingest' && (PUBLIC_TLS.test(k) || CONSOLE_SECRETS.test(k)))) continue;
    out[k] = v;
  }
  return out;
}

/** What `npm run stack` starts a service with: the stack's settings, scoped, plus its own internal certificate. */
export function stackChildEnv(name: ServiceName, base: Env, settings: StackSettings, secrets: SecretEnvNames, tls?: InternalTls): Env {
  return { ...scopeServiceEnv(name, stackServiceEnv(base, settings), secrets), ...tls?.envFor(name) };
}
