import { type Bus, connectBus } from '@relay/bus';
import { createLogger } from '@relay/telemetry';
import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOCK_ALLOWANCE_MS, openRevocations, type Revocations } from './revocations.js';

const prefix = uniquePrefix('revoked');
const logger = createLogger({ service: 'test', level: 'silent' });
const HOUR = 3_600_000;
let bus: Bus;
const opened: Revocations[] = [];

beforeAll(async () => {
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'revocations-test' });
});

afterAll(async () => {
  await Promise.allSettled(opened.map((r) => r.stop()));
  await bus?.close();
  await dropBus(prefix);
});

async function open(lifetimeMs: number): Promise<Revocations> {
  const r = await openRevocations({ bus, lifetimeMs, logger });
  opened.push(r);
  await r.start();
  return r;
}

const maxAgeMs = async () => (await bus.jsm.streams.info(`KV_${prefix}-console-revoked`)).config.max_age / 1e6;

describe('console sign-out bucket', () => {
  it('keeps entries for the longest sign-in lifetime any replica needs, never shorter', async () => {
    await open(HOUR);
    expect(await maxAgeMs()).toBe(HOUR + CLOCK_ALLOWANCE_MS);
    // A replica with a longer lifetime lengthens it; one with a shorter leaves it.
    await open(2 * HOUR);
    expect(await maxAgeMs()).toBe(2 * HOUR + CLOCK_ALLOWANCE_MS);
    const short = await open(HOUR / 2);
    expect(await maxAgeMs()).toBe(2 * HOUR + CLOCK_ALLOWANCE_MS);
    expect(await short.lifetime(HOUR / 2)).toBe(HOUR / 2);
    // relay.yaml's session_ttl raised while running: the next sign-in lengthens the bucket first.
    expect(await short.lifetime(3 * HOUR)).toBe(3 * HOUR);
    expect(await maxAgeMs()).toBe(3 * HOUR + CLOCK_ALLOWANCE_MS);
  });

  it('ends one sign-in, or every earlier one of a person, on every instance watching', async () => {
    const [a, b] = [await open(HOUR), await open(HOUR)];
    const iat = a.issuedAt('ada@campus.example');
    const one = { sid: 'sid-one-0123456789ab', email: 'ada@campus.example', iat };
    const two = { sid: 'sid-two-0123456789ab', email: 'ada@campus.example', iat };
    await a.revoke(one.sid, Date.now() + HOUR);
    expect(a.revoked(one)).toBe(true);
    expect(a.revoked(two)).toBe(false);
    await expect.poll(() => b.revoked(one)).toBe(true);
    // Another person's address, in any case, is another person.
    await b.revokePerson('ADA@campus.example');
    expect(b.revoked(two)).toBe(true);
    expect(b.revoked({ ...two, email: 'olive@campus.example' })).toBe(false);
    await expect.poll(() => a.revoked(two)).toBe(true);
    // A sign-in made afterwards is dated after the sign-out, whatever the clock says.
    const later = { ...two, sid: 'sid-new-0123456789ab', iat: a.issuedAt('ada@campus.example') };
    expect(a.revoked(later)).toBe(false);
    // A replica started afterwards reads what is stored before it serves.
    const c = await open(HOUR);
    expect(c.revoked(one)).toBe(true);
    expect(c.revoked(two)).toBe(true);
    expect(c.revoked(later)).toBe(false);
  });
});
