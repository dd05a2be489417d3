/**
 * NATS (JetStream) and Redis for tests in containers, through testcontainers: the test harness's
 * container mode (RELAY_TEST_CONTAINERS=1). Without it tests use NATS_URL / REDIS_URL or the
 * local defaults (see infra.ts).
 */
import type { StartedTestContainer } from 'testcontainers';

type Env = Record<string, string | undefined>;

export interface TestInfraImages {
  nats: string;
  redis: string;
}

/** The official images; RELAY_NATS_IMAGE / RELAY_REDIS_IMAGE choose others (e.g. local ones). */
export const DEFAULT_TEST_IMAGES: Readonly<TestInfraImages> = { nats: 'nats:2.9', redis: 'redis:7' };

export interface TestInfra {
  natsUrl: string;
  redisUrl: string;
  /** Removes both containers. Safe to call twice. */
  stop(): Promise<void>;
}

/** Whether tests should start their NATS and Redis as containers: RELAY_TEST_CONTAINERS=1. */
export function testContainersWanted(env: Env = process.env): boolean {
  return ['1', 'true', 'yes'].includes(env.RELAY_TEST_CONTAINERS?.trim().toLowerCase() ?? '');
}

export function testInfraImages(env: Env = process.env): TestInfraImages {
  return {
    nats: env.RELAY_NATS_IMAGE?.trim() || DEFAULT_TEST_IMAGES.nats,
    redis: env.RELAY_REDIS_IMAGE?.trim() || DEFAULT_TEST_IMAGES.redis,
  };
}

/**
 * Starts NATS with JetStream and Redis as containers and resolves with their URLs as seen from
 * this machine. If the second fails to start, the first is removed again.
 */
export async function startTestInfra(images: TestInfraImages = testInfraImages()): Promise<TestInfra> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const started: StartedTestContainer[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= Promise.allSettled(started.map((c) => c.stop({ remove: true }))).then((results) => {
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }));
  try {
    // The servers' own "ready" lines: no shell needed in the image to probe ports.
    const nats = await new GenericContainer(images.nats)
      .withCommand(['-js'])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    started.push(nats);
    const redis = await new GenericContainer(images.redis)
      .withCommand(['redis-server', '--save', '', '--appendonly', 'no'])
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .start();
    started.push(redis);
    return {
      natsUrl: `nats://${nats.getHost()}:${nats.getMappedPort(4222)}`,
      redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
      stop,
    };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

let shared: { infra: Promise<TestInfra>; users: number; saved: Env } | undefined;

/**
 * Container infrastructure shared by everything in this test process that holds a lease: the
 * first caller starts it and points NATS_URL / REDIS_URL (hence testNatsUrl(), testRedisUrl())
 * at it; the returned release removes it when the last holder lets go and restores both.
 */
export async function acquireTestInfra(): Promise<() => Promise<void>> {
  if (!shared) {
    const infra = startTestInfra().then((i) => {
      process.env.NATS_URL = i.natsUrl;
      process.env.REDIS_URL = i.redisUrl;
      return i;
    });
    shared = { infra, users: 0, saved: { NATS_URL: process.env.NATS_URL, REDIS_URL: process.env.REDIS_URL } };
  }
  const lease = shared;
  lease.users++;
  try {
    await lease.infra;
  } catch (err) {
    if (shared === lease) shared = undefined;
    throw err;
  }
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    if (--lease.users > 0) return;
    if (shared === lease) shared = undefined;
    for (const [k, v] of Object.entries(lease.saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await (await lease.infra).stop();
  };
}
