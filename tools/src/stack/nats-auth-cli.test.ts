import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { requireBinary, runsWith } from '@relay/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { findNatsServer } from './infra.js';
import { writeNatsAuth } from './nats-auth-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'relay-nats-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run nats-auth', () => {
  it('writes the users, a seed per service and the envelope key, and keeps seeds and key when run again', () => {
    const first = writeNatsAuth(dir, 'relay');
    expect(first.map((f) => f.slice(dir.length + 1)).sort()).toEqual(
      ['admin.nk', 'credentials.nk', 'envelope-key', 'graph-sender.nk', 'ingest.nk', 'scheduler.nk', 'smtp-sender.nk', 'users.conf'].sort(),
    );
    const users = readFileSync(join(dir, 'users.conf'), 'utf8');
    const seed = readFileSync(join(dir, 'ingest.nk'), 'utf8');
    expect(users).not.toContain(seed.trim());
    expect(writeNatsAuth(dir, 'relay')).toEqual([join(dir, 'users.conf')]);
    expect(readFileSync(join(dir, 'ingest.nk'), 'utf8')).toBe(seed);
    expect(readFileSync(join(dir, 'users.conf'), 'utf8')).toBe(users);
  });

  const binary = findNatsServer(process.env);
  it.runIf(runsWith(binary))('makes a users.conf that nats-server accepts with deploy/nats.conf', () => {
    const nats = requireBinary(binary, 'install nats-server, or set RELAY_NATS_SERVER_BIN');
    writeNatsAuth(dir, 'relay');
    copyFileSync(resolve(import.meta.dirname, '..', '..', '..', 'deploy', 'nats.conf'), join(dir, 'nats.conf'));
    const r = spawnSync(nats, ['-c', join(dir, 'nats.conf'), '-t'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain('is valid');
  });
});
