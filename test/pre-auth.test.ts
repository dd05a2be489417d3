import { readFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { status } from '@grpc/grpc-js';
import {
  clientEntry,
  dropBus,
  floodSendMail,
  newClient,
  type ServiceProcess,
  serviceTestEnv,
  spawnService,
  testNatsUrl,
  uniquePrefix,
  writeConfig,
} from '@relay/testkit';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

const MB = 1024 * 1024;
// Far under a container's memory limit, far over what ingest needs at rest.
const RSS_BOUND_BYTES = 300 * MB;

const app = newClient('billing-app', ['registrar']);
const prefix = uniquePrefix('preauth');
const running: ServiceProcess[] = [];

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Ingest alone, one per test, so that one test's connections do not count in the next. */
async function startIngest(): Promise<ServiceProcess> {
  const config = {
    clients: [clientEntry(app)],
    // A Graph sender raises the largest message ingest takes to 150 MB.
    senders: [
      {
        id: 'registrar',
        from: 'registrar@campus.example',
        transport: 'graph',
        graph: { tenant_id: 't', client_id: 'c', client_secret: 's', mailbox: 'registrar@campus.example' },
      },
    ],
  };
  const ingest = await spawnService('ingest', {
    env: {
      RELAY_CONFIG: writeConfig(config),
      NATS_URL: testNatsUrl(),
      RELAY_BUS_PREFIX: prefix,
      RELAY_GRPC_PORT: '0',
      RELAY_HTTP_PORT: '0',
      RELAY_METRICS_PORT: '0',
      RELAY_HOST: '127.0.0.1',
      RELAY_GRPC_MAX_CONNECTIONS_PER_PEER: '4',
      ...serviceTestEnv('ingest'),
    },
  });
  running.push(ingest);
  return ingest;
}

afterEach(async () => {
  const exits = await Promise.all(running.splice(0).map((p) => p.stop('SIGTERM', 20_000)));
  expect(exits).toEqual(exits.map(() => ({ code: 0, signal: null })));
});

afterAll(async () => {
  await dropBus(prefix);
});

describe('before the key is checked', () => {
  it('a keyless flood of large calls is refused without ingest buffering the bodies', async () => {
    const ingest = await startIngest();
    const address = `127.0.0.1:${ingest.ports.grpc}`;
    const before = rssBytes(ingest.pid);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(ingest.pid))), 10);
    try {
      // Over four connections (the per-peer limit), half without a key and half with a wrong one.
      const floods = await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          floodSendMail(address, { calls: 6, bytes: 40 * MB, ...(i % 2 ? { authorization: 'Bearer not-a-key-of-any-client-0123456789' } : {}) }),
        ),
      );
      expect(floods.flatMap((f) => f.codes)).toEqual(Array(24).fill(status.UNAUTHENTICATED));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssBytes(ingest.pid));
    expect(peak).toBeLessThan(RSS_BOUND_BYTES);
  }, 120_000);

  it('caps streams per connection and connections per peer', async () => {
    const ingest = await startIngest();
    const address = `http://127.0.0.1:${ingest.ports.grpc}`;
    const sessions = Array.from({ length: 6 }, () => connect(address));
    try {
      const outcomes = await Promise.all(
        sessions.map(
          (s) =>
            new Promise<string>((resolve) => {
              s.once('remoteSettings', (settings) => resolve(`settings:${settings.maxConcurrentStreams}`));
              s.once('error', () => resolve('refused'));
              s.once('close', () => resolve('refused'));
            }),
        ),
      );
      // RELAY_GRPC_MAX_CONNECTIONS_PER_PEER=4: the fifth and sixth connection are closed at once.
      expect(outcomes.filter((o) => o === 'refused')).toHaveLength(2);
      expect(outcomes.filter((o) => o !== 'refused')).toEqual(Array(4).fill('settings:64'));
    } finally {
      for (const s of sessions) s.destroy();
    }
  });
});
