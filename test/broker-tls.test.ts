import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus, createNatsAuth, inboxPrefixFor } from '@relay/bus';
import { readEnv } from '@relay/config';
import { hasNatsServer, type PrivateNats, startPrivateNats, testCa, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe.skipIf(!hasNatsServer)('NATS over TLS with a service user', () => {
  const prefix = uniquePrefix('natstls');
  const auth = createNatsAuth(prefix);
  const dir = mkdtempSync(join(tmpdir(), 'relay-nats-tls-'));
  const seedFile = join(dir, 'ingest.nk');
  let nats: PrivateNats;

  beforeAll(async () => {
    writeFileSync(seedFile, auth.users.find((u) => u.kind === 'ingest')!.seed, { mode: 0o600 });
    nats = await startPrivateNats({ auth, tls: { certFile: testCa().certFile, keyFile: testCa().keyFile } });
  });
  afterAll(async () => {
    await nats?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const busFor = (env: Record<string, string>) => {
    const e = readEnv({ NATS_URL: nats.url, RELAY_BUS_PREFIX: prefix, ...env });
    return connectBus({ servers: e.natsUrl, prefix: e.busPrefix, name: 'tls-test', auth: e.nats, inboxPrefix: inboxPrefixFor('ingest') });
  };

  it("connects with NATS_TLS_CA and the service's nkey seed, and works as that user", async () => {
    const bus = await busFor({ NATS_TLS_CA: testCa().caFile, NATS_NKEY_SEED_FILE: seedFile });
    try {
      expect(await bus.healthy()).toBe(true);
      expect(bus.nc.info?.tls_required).toBe(true);
    } finally {
      await bus.close();
    }
  });

  it('refuses a server whose certificate does not chain to NATS_TLS_CA', async () => {
    const wrongCa = join(dir, 'wrong-ca.pem');
    writeFileSync(wrongCa, testCa().untrusted.certPem);
    await expect(busFor({ NATS_TLS_CA: wrongCa, NATS_NKEY_SEED_FILE: seedFile })).rejects.toThrow(/cannot connect to NATS/);
  });
});
