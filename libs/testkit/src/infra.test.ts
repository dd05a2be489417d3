import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { busNames, connectBus } from '@relay/bus';
import { describe, expect, it } from 'vitest';
import { dropBus, testNatsUrl, uniquePrefix } from './infra.js';

async function streamsOf(prefix: string): Promise<string[]> {
  const { submittedStream } = busNames(prefix);
  const upper = submittedStream.slice(0, -'_SUBMITTED'.length);
  const nc = await connect({ servers: testNatsUrl() });
  try {
    const jsm = await jetstreamManager(nc);
    const names: string[] = [];
    for await (const s of jsm.streams.list()) if (s.config.name.includes(prefix) || s.config.name.includes(upper)) names.push(s.config.name);
    return names;
  } finally {
    await nc.close();
  }
}

describe('uniquePrefix and dropBus', () => {
  it('makes distinct lower-case prefixes', () => {
    const a = uniquePrefix('Bus');
    expect(a).toMatch(/^bus-[a-z0-9]+-[0-9a-f]{6}$/);
    expect(uniquePrefix('bus')).not.toBe(a);
  });

  it('removes every stream and bucket a bus created under the prefix, against a real JetStream', async () => {
    const prefix = uniquePrefix('tk');
    const bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'testkit-test' });
    await bus.close();
    expect((await streamsOf(prefix)).length).toBeGreaterThanOrEqual(3);
    await dropBus(prefix);
    expect(await streamsOf(prefix)).toEqual([]);
    await dropBus(prefix);
  });
});
