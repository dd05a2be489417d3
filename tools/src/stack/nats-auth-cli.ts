/**
 * `npm run nats-auth -- --out DIR [--prefix relay]`: the NATS users of a deployment. Writes
 * `users.conf` (public keys and permissions, for the server to include), one nkey seed per service
 * (`<kind>.nk`, plus `admin.nk` for operators) and the envelope key of ingest and the senders.
 * Seeds and the key already in DIR are kept, so running it again after an upgrade only refreshes
 * the permissions. DIR is this user's alone; the files in it are readable by all, because Compose
 * mounts them as they are into containers that run as another user (1000).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createNatsAuth, natsUsersInclude, type NatsUser } from '@relay/bus';
import { readEnv } from '@relay/config';

export function writeNatsAuth(dir: string, prefix: string): string[] {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const seedFile = (kind: NatsUser['kind']) => join(dir, `${kind}.nk`);
  const existing: Partial<Record<NatsUser['kind'], string>> = {};
  for (const kind of ['ingest', 'scheduler', 'smtp-sender', 'graph-sender', 'credentials', 'admin'] as const) {
    if (existsSync(seedFile(kind))) existing[kind] = readFileSync(seedFile(kind), 'utf8').trim();
  }
  const auth = createNatsAuth(prefix, existing);
  const written = [join(dir, 'users.conf')];
  writeFileSync(written[0]!, natsUsersInclude(auth), { mode: 0o644 });
  for (const u of auth.users) {
    if (existing[u.kind]) continue;
    writeFileSync(seedFile(u.kind), `${u.seed}\n`, { mode: 0o644 });
    written.push(seedFile(u.kind));
  }
  const keyFile = join(dir, 'envelope-key');
  if (!existsSync(keyFile)) {
    writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o644 });
    written.push(keyFile);
  }
  return written;
}

function main() {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { out: { type: 'string' }, prefix: { type: 'string' } } });
  if (!values.out) {
    console.error('Usage: npm run nats-auth -- --out DIR [--prefix relay]   (DIR e.g. deploy/secrets or deploy/kubernetes/nats-auth)');
    process.exitCode = 2;
    return;
  }
  const prefix = readEnv({ RELAY_BUS_PREFIX: values.prefix ?? process.env.RELAY_BUS_PREFIX }).busPrefix;
  for (const f of writeNatsAuth(resolve(values.out), prefix)) console.log(`wrote ${f}`);
}

if (process.argv[1] && resolve(process.argv[1]).endsWith('nats-auth-cli.js')) main();
