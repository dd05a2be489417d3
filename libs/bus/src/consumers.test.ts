import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InFlight } from '@relay/core';
import { dropBus, eventually, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { connectBus, type Bus } from './bus.js';
import { workDurable } from './consumers.js';

describe('workDurable against a real NATS JetStream', () => {
  const prefix = uniquePrefix('work');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'work-durable-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  it('never takes more messages than it has slots for, and handles each once', async () => {
    const subject = bus.names.dispatchSubject('smtp', 's1');
    for (let i = 0; i < 12; i++) await bus.js.publish(subject, `m-${i}`);
    const inFlight = new InFlight();
    const handled: string[] = [];
    let busiest = 0;
    const loop = await workDurable(
      bus,
      {
        stream: bus.names.dispatchStream,
        durable: 'work-test',
        filterSubject: bus.names.dispatchWildcard('smtp'),
        ackWaitMs: 30_000,
        maxAckPending: 100,
        concurrency: 3,
        inFlight,
      },
      async (m) => {
        busiest = Math.max(busiest, inFlight.size);
        await new Promise((r) => setTimeout(r, 30));
        handled.push(m.string());
        m.ack();
      },
      { warn() {} },
    );
    await eventually(() => (handled.length === 12 ? true : undefined), 10_000);
    loop.stop();
    await loop.done;
    expect(busiest).toBe(3);
    expect([...handled].sort()).toEqual(Array.from({ length: 12 }, (_, i) => `m-${i}`).sort());
  });
});
