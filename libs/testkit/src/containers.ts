/**
 * Containers through testcontainers, the one way the tests and `npm run stack` start them; and
 * NATS (JetStream) and Redis for tests in containers: the test harness's container mode
 * (RELAY_TEST_CONTAINERS=1). Without it tests use NATS_URL / REDIS_URL or the local defaults
 * (see infra.ts).
 */

type Env = Record<string, string | undefined>;

/** A started container: its address as seen from this machine, and how to remove it. */
export interface StartedContainer {
  host: string;
  port: number;
  stop(): Promise<void>;
}

export interface ContainerFile {
  content: string;
  target: string;
}

export type ContainerStarter = (image: string, port: number, command: string[], readyLog: RegExp, files?: ContainerFile[]) => Promise<StartedContainer>;

/**
 * A stop for what was started (`started` may grow until it is called): stops them all at once,
 * rejects with the first failure, and is safe to call twice.
 */
export function stopAllOnce(started: ReadonlyArray<{ stop(): Promise<void> }>): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () =>
    (stopping ??= Promise.allSettled(started.map((c) => c.stop())).then((results) => {
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }));
}

/**
 * Starts a container exposing `port` and resolves once it logs `readyLog` (the servers' own ready
 * lines: official images have no shell to probe ports with). `stop()` removes it.
 */
export const startContainer: ContainerStarter = async (image, port, command, readyLog, files) => {
  const { GenericContainer, Wait } = await import('testcontainers');
  let container = new GenericContainer(image).withExposedPorts(port).withWaitStrategy(Wait.forLogMessage(readyLog));
  if (command.length > 0) container = container.withCommand(command);
  if (files?.length) container = container.withCopyContentToContainer(files);
  const started = await container.start();
  return {
    host: started.getHost(),
    port: started.getMappedPort(port),
    stop: async () => {
      await started.stop({ remove: true });
    },
  };
};

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
  const started: StartedContainer[] = [];
  const stop = stopAllOnce(started);
  try {
    const nats = await startContainer(images.nats, 4222, ['-js'], /Server is ready/);
    started.push(nats);
    const redis = await startContainer(images.redis, 6379, ['redis-server', '--save', '', '--appendonly', 'no'], /Ready to accept connections/);
    started.push(redis);
    return { natsUrl: `nats://${nats.host}:${nats.port}`, redisUrl: `redis://${redis.host}:${redis.port}`, stop };
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
