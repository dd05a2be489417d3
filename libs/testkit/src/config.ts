import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
