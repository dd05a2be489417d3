import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasNatsServer, hasRedisServer, sleep } from '@relay/testkit';
import { startLoad } from './load.js';
import { SERVICE_NAMES, type ServiceName } from '@relay/core';
import { ACK_WAIT_MS, startFaultRig, type FaultRig } from './rig.js';
import { figures, figuresTable, settle, type FaultFigures } from './tally.js';

/** How long the SMTP server stays away (the 20 s unless RELAY_FAULTS_SMTP_OUTAGE_S says otherwise). */
const SMTP_OUTAGE_MS = Number(process.env.RELAY_FAULTS_SMTP_OUTAGE_S || 20) * 1000;
/** How long NATS and Redis stay down: long enough for every service to notice. */
const BROKER_DOWN_MS = 3_000;
/** One SendMail every this long, to an SMTP and a Graph sender in turn. */
const SEND_EVERY_MS = 250;
/** Messages accepted before the fault, and again after the recovery, in each case. */
const AROUND_FAULT = 8;
const SETTLE_MS = ACK_WAIT_MS + 45_000;
const CASE_TIMEOUT_MS = SMTP_OUTAGE_MS + SETTLE_MS + 60_000;

interface FaultCase {
  fault: string;
  /**
   * Whether a message may be sent twice: only when what was cut off is the sender's conversation
   * with the provider (accepted by the provider, then the crash before the sent-marker).
   */
  window: boolean;
  inject(rig: FaultRig): Promise<void>;
}

const killAndRestart = (name: ServiceName): FaultCase => ({
  fault: `kill -9 ${name}`,
  window: name === 'smtp-sender' || name === 'graph-sender',
  async inject(rig) {
    // A sender is killed while the provider takes a message: the documented duplicate window.
    if (name === 'smtp-sender' || name === 'graph-sender') await waitFor(() => rig.providerBusy(name) > 0, 10_000);
    await rig.kill(name);
    await rig.restart(name);
  },
});

async function waitFor(done: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > end) throw new Error(`the condition was not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}

const CASES: FaultCase[] = [
  ...SERVICE_NAMES.map(killAndRestart),
  {
    fault: 'NATS stopped and started',
    // Stopped mid-send, a sender cannot store the sent-marker of a message the provider just took.
    window: true,
    async inject(rig) {
      await rig.nats.kill();
      await sleep(BROKER_DOWN_MS);
      await rig.nats.restart();
    },
  },
  {
    fault: 'Redis FLUSHALL',
    window: false,
    async inject(rig) {
      const redis = new Redis(rig.redis.url);
      await redis.flushall();
      await redis.quit();
    },
  },
  {
    fault: 'Redis killed and restarted',
    window: false,
    async inject(rig) {
      await rig.redis.kill();
      await sleep(BROKER_DOWN_MS);
      await rig.redis.restart();
    },
  },
  {
    fault: `SMTP server gone ${SMTP_OUTAGE_MS / 1000} s`,
    // Cut while it answers DATA, the server may have taken a message its client never heard 250 for.
    window: true,
    async inject(rig) {
      await rig.smtpDown();
      await sleep(SMTP_OUTAGE_MS);
      await rig.smtpUp();
    },
  },
];

let rig: FaultRig;
const rows: FaultFigures[] = [];

describe.skipIf(!hasNatsServer || !hasRedisServer)('under faults, every accepted message is delivered and ends SENT', () => {
  beforeAll(async () => {
    rig = await startFaultRig();
  }, 120_000);

  afterAll(async () => {
    if (rows.length) console.log(`fault injection (accepted = SendMail answered OK; duplicates = copies beyond the first):\n${figuresTable(rows)}`);
    await rig?.close();
  }, 60_000);

  it.each(CASES.map((c) => [c.fault, c] as const))(
    '%s',
    async (_name, c) => {
      const load = startLoad({ client: rig.client, label: c.fault.replace(/\W+/g, '-'), senders: ['mail', 'graph'], everyMs: SEND_EVERY_MS });
      try {
        await load.acceptedMore(AROUND_FAULT);
        const faultAt = Date.now();
        await c.inject(rig);
        await load.acceptedMore(AROUND_FAULT);
        const accepted = await load.stop();
        const { statuses, unsettled } = await settle(rig, accepted, SETTLE_MS);
        const f = figures(c.fault, rig, accepted, statuses, faultAt);
        rows.push(f);

        expect({ unsettled, lost: f.lost, notSent: f.notSent, foreign: f.foreign, outsideWindow: f.outsideWindow }).toEqual({
          unsettled: undefined,
          lost: 0,
          notSent: [],
          foreign: 0,
          outsideWindow: [],
        });
        expect(f.duplicates, `duplicated:\n${f.duplicated.join('\n')}`).toBeLessThanOrEqual(c.window ? f.inFlight : 0);
      } finally {
        // A case that failed midway must not leave its load running into the next.
        await load.stop().catch(() => {});
      }
    },
    CASE_TIMEOUT_MS,
  );
});
