import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServiceName } from '@relay/core';
import { stringify } from 'yaml';

const tempDirs: string[] = [];
let cleanupRegistered = false;

/**
 * Writes a relay configuration as YAML into a fresh temporary directory and returns the file's
 * path, for `RELAY_CONFIG`. A string is written as it is, so tests can feed malformed YAML.
 * The directories are removed when the test process exits.
 */
export function writeConfig(config: unknown, fileName = 'relay.yaml'): string {
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.once('exit', () => {
      for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'relay-config-'));
  tempDirs.push(dir);
  const path = join(dir, fileName);
  writeFileSync(path, typeof config === 'string' ? config : stringify(config), { mode: 0o600 });
  return path;
}

/** An API key no other test uses. */
export function randomApiKey(prefix = 'rk_test_'): string {
  return prefix + randomBytes(24).toString('base64url');
}

/** A value for `RELAY_MASTER_KEY`: 32 random bytes, base64. */
export function masterKey(): string {
  return randomBytes(32).toString('base64');
}

/** A value for `RELAY_INTERNAL_TOKEN`: what the services present to the credentials service. */
export function internalToken(): string {
  return randomBytes(32).toString('base64url');
}

/** A value for `RELAY_ENVELOPE_KEY`: 32 random bytes, base64. */
export function envelopeKey(): string {
  return randomBytes(32).toString('base64');
}

// One of each per test process: services a test starts separately must still agree on them.
let processSecrets: { envelopeKey: string; internalToken: string } | undefined;
const ENVELOPE_KEY_HOLDERS: readonly string[] = ['ingest', 'smtp-sender', 'graph-sender'];
const INTERNAL_TOKEN_HOLDERS: readonly string[] = ['ingest', 'smtp-sender', 'graph-sender', 'credentials'];

/**
 * The environment a service needs to start beyond its config and bus: the envelope key (ingest
 * and the senders) and the internal token toward credentials (credentials and its callers). The
 * values are the same for every call in a test process; without `name`, all of them.
 */
export function serviceTestEnv(name?: ServiceName | string): Record<string, string> {
  processSecrets ??= { envelopeKey: envelopeKey(), internalToken: internalToken() };
  const env: Record<string, string> = {};
  if (name === undefined || ENVELOPE_KEY_HOLDERS.includes(name)) env.RELAY_ENVELOPE_KEY = processSecrets.envelopeKey;
  if (name === undefined || INTERNAL_TOKEN_HOLDERS.includes(name)) env.RELAY_INTERNAL_TOKEN = processSecrets.internalToken;
  return env;
}
