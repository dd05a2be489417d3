import { afterEach, describe, expect, it } from 'vitest';
import { testRedisUrl } from '@relay/testkit';
import type { Redis } from 'ioredis';
import { createRedis } from './connect.js';

describe('createRedis', () => {
  let redis: Redis | undefined;
  afterEach(() => redis?.disconnect());

  it("'fail-fast' refuses a command at once while it is not connected, rather than queueing it", async () => {
    redis = createRedis('fail-fast', { url: testRedisUrl(), name: 'relay-test' });
    redis.on('error', () => {});
    await expect(redis.get('anything')).rejects.toThrow(/enableOfflineQueue/);
    // The refused command started the connection (lazyConnect); once up, commands go through.
    if (redis.status !== 'ready') await new Promise((resolve) => redis!.once('ready', resolve));
    expect(await redis.client('GETNAME')).toBe(`relay-test:${process.pid}`);
  });

  it("'queued' holds a command issued before the connection is up and runs it once it is", async () => {
    redis = createRedis('queued', { url: testRedisUrl(), name: 'relay-test' });
    expect(redis.status).not.toBe('ready');
    expect(await redis.ping()).toBe('PONG');
    expect(await redis.client('GETNAME')).toBe(`relay-test:${process.pid}`);
  });
});
