import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errors, nkeyAuthenticator } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { requireBinary, runsWith } from '@relay/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { findNatsServer } from './infra.js';
import { ENVELOPE_KEY_HOLDERS, natsUserEnv, prepareStackNats, stackEnvelopeKey } from './nats.js';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'relay-stack-nats-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("the stack's own NATS", () => {
  it('gives each service its own seed file, readable by this user only, and no other way to log in', () => {
    const nats = prepareStackNats(tempDir(), 'relay');
    for (const kind of ['ingest', 'scheduler', 'smtp-sender', 'graph-sender', 'credentials', 'admin'] as const) {
      expect(statSync(nats.seedFiles[kind]).mode & 0o077).toBe(0);
      expect(readFileSync(nats.seedFiles[kind], 'utf8')).toMatch(/^SU[A-Z0-9]+\n$/);
    }
    const env = natsUserEnv({ NATS_USER: 'someone', NATS_PASSWORD: 'pw', NATS_TLS_CA: '/ca.pem' }, nats, 'ingest');
    expect(env).toMatchObject({ NATS_USER: undefined, NATS_PASSWORD: undefined, NATS_NKEY_SEED_FILE: nats.seedFiles.ingest, NATS_TLS_CA: '/ca.pem' });
    expect(natsUserEnv({}, undefined, 'ingest')).toEqual({});
  });

  it('keeps one envelope key across runs and gives it to ingest and the senders only', () => {
    const dir = tempDir();
    const key = stackEnvelopeKey(dir, {});
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    expect(stackEnvelopeKey(dir, {})).toBe(key);
    expect(stackEnvelopeKey(dir, { RELAY_ENVELOPE_KEY: 'given' })).toBe('given');
    expect(ENVELOPE_KEY_HOLDERS).toEqual(['ingest', 'smtp-sender', 'graph-sender']);
  });

  const binary = findNatsServer(process.env);
  it.runIf(runsWith(binary))("runs a private nats-server that admits the services' users and refuses anyone else", async () => {
    const bin = requireBinary(binary, 'install nats-server, or set RELAY_NATS_SERVER_BIN');
    const nats = prepareStackNats(tempDir(), 'relay');
    const server = await nats.launch.startPrivate(bin);
    try {
      await expect(connect({ servers: server.url, reconnect: false })).rejects.toBeInstanceOf(errors.AuthorizationError);
      const seed = readFileSync(nats.seedFiles.scheduler, 'utf8').trim();
      const nc = await connect({ servers: server.url, authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)), inboxPrefix: '_INBOX.scheduler' });
      await nc.flush();
      await nc.close();
    } finally {
      await server.stop();
    }
  });
});
