import { createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  describeChoice,
  isInfraError,
  planInfra,
  realProbes,
  startInfra,
  startContainer,
  tcpListening,
  type InfraProbes,
  type StartedContainer,
} from './infra.js';

function probes(opts: { docker?: boolean; listening?: number[]; natsServer?: string } = {}): InfraProbes & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    natsServerBinary: () => opts.natsServer,
    dockerAvailable: async () => {
      calls.push('docker');
      return opts.docker ?? false;
    },
    listening: async (host, port) => {
      calls.push(`tcp ${host}:${port}`);
      return (opts.listening ?? []).includes(port);
    },
  };
}

async function planError(env: Record<string, string>, p: InfraProbes): Promise<Error> {
  const err = await planInfra(env, p).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isInfraError(err)) throw new Error(`expected an InfraError, got ${String(err)}`);
  return err;
}

describe('planInfra', () => {
  it('takes NATS_URL and REDIS_URL first and probes nothing', async () => {
    const p = probes({ docker: true, listening: [4222, 6379] });
    const plan = await planInfra({ NATS_URL: 'nats://n:4222', REDIS_URL: 'redis://r:6379' }, p);
    expect(plan.nats).toMatchObject({ source: 'env', url: 'nats://n:4222' });
    expect(plan.redis).toMatchObject({ source: 'env', url: 'redis://r:6379' });
    expect(p.calls).toEqual([]);
  });

  it('runs containers when a Docker engine answers, even if something listens locally', async () => {
    const p = probes({ docker: true, listening: [4222, 6379] });
    const plan = await planInfra({}, p);
    expect(plan.nats).toMatchObject({ source: 'container', image: 'nats:2.12' });
    expect(plan.redis).toMatchObject({ source: 'container', image: 'redis:7' });
    expect(p.calls).toEqual(['docker']);
  });

  it('takes images from RELAY_NATS_IMAGE and RELAY_REDIS_IMAGE', async () => {
    const plan = await planInfra({ RELAY_NATS_IMAGE: 'nats:2.11', RELAY_REDIS_IMAGE: 'valkey/valkey:8' }, probes({ docker: true }));
    expect(plan.nats.image).toBe('nats:2.11');
    expect(plan.redis.image).toBe('valkey/valkey:8');
  });

  it('mixes: an env URL for one, a container for the other', async () => {
    const plan = await planInfra({ NATS_URL: 'nats://n:4222' }, probes({ docker: true }));
    expect(plan.nats.source).toBe('env');
    expect(plan.redis.source).toBe('container');
  });

  it('falls back to the local default addresses without Docker', async () => {
    const p = probes({ docker: false, listening: [4222, 6379] });
    const plan = await planInfra({}, p);
    expect(plan.nats).toMatchObject({ source: 'local', url: 'nats://127.0.0.1:4222' });
    expect(plan.redis).toMatchObject({ source: 'local', url: 'redis://127.0.0.1:6379' });
    expect(p.calls).toEqual(['docker', 'tcp 127.0.0.1:4222', 'tcp 127.0.0.1:6379']);
  });

  it('says what to install when nothing is found', async () => {
    const err = await planError({}, probes({ docker: false, listening: [6379] }));
    expect(err.message).toContain('NATS JetStream: nothing listens on 127.0.0.1:4222');
    expect(err.message).toContain('nats-server -js');
    expect(err.message).toContain('NATS_URL');
    expect(err.message).toContain('Docker engine');
    expect(err.message).not.toContain('Redis:');
  });

  it('RELAY_STACK_INFRA=local never asks Docker', async () => {
    const p = probes({ docker: true, listening: [4222, 6379] });
    const plan = await planInfra({ RELAY_STACK_INFRA: 'local' }, p);
    expect(plan.nats.source).toBe('local');
    expect(p.calls).not.toContain('docker');

    const err = await planError({ RELAY_STACK_INFRA: 'local' }, probes({ docker: true }));
    expect(err.message).toContain('redis-server');
    expect(err.message).toContain('containers were not tried');
  });

  it('RELAY_STACK_INFRA=local runs a nats-server of its own when this machine has the binary', async () => {
    const p = probes({ docker: true, listening: [4222, 6379], natsServer: '/usr/sbin/nats-server' });
    const plan = await planInfra({ RELAY_STACK_INFRA: 'local' }, p);
    expect(plan.nats).toMatchObject({ source: 'private', binary: '/usr/sbin/nats-server' });
    expect(plan.redis.source).toBe('local');
    // Without RELAY_STACK_INFRA the contract's order holds: the engine first.
    expect((await planInfra({}, p)).nats.source).toBe('container');
  });

  it('RELAY_STACK_INFRA=containers without an engine is an error, never a silent fallback', async () => {
    const p = probes({ docker: false, listening: [4222, 6379] });
    const err = await planError({ RELAY_STACK_INFRA: 'containers' }, p);
    expect(err.message).toContain('no Docker engine answers');
    expect(p.calls).toEqual(['docker']);
  });

  it('refuses an unknown RELAY_STACK_INFRA', async () => {
    const err = await planError({ RELAY_STACK_INFRA: 'kubernetes' }, probes());
    expect(err.message).toContain('RELAY_STACK_INFRA: "kubernetes"');
  });
});

describe('startInfra', () => {
  function fakeStarter(failImage?: string) {
    const log: string[] = [];
    let next = 40000;
    const start = async (image: string, port: number, command: string[], readyLog: RegExp): Promise<StartedContainer> => {
      if (image === failImage) throw new Error(`pull ${image}: denied`);
      log.push(`start ${image} ${port} ${command.join(' ')}`.trim());
      expect(readyLog).toBeInstanceOf(RegExp);
      const mapped = next++;
      return { host: 'localhost', port: mapped, stop: async () => void log.push(`stop ${image}`) };
    };
    return { start, log };
  }

  it('starts the containers the plan asks for and removes them on stop (once)', async () => {
    const plan = await planInfra({}, probes({ docker: true }));
    const { start, log } = fakeStarter();
    const infra = await startInfra(plan, start);
    expect(infra.natsUrl).toBe('nats://localhost:40000');
    expect(infra.redisUrl).toBe('redis://localhost:40001');
    expect(describeChoice(infra.plan.nats)).toBe('NATS JetStream: container nats:2.12 at nats://localhost:40000 (removed on exit)');
    expect(log).toEqual(['start nats:2.12 4222 -js', 'start redis:7 6379']);
    await Promise.all([infra.stop(), infra.stop()]);
    expect(log.filter((l) => l.startsWith('stop'))).toEqual(['stop nats:2.12', 'stop redis:7']);
  });

  it('removes what it started when a later container fails', async () => {
    const plan = await planInfra({}, probes({ docker: true }));
    const { start, log } = fakeStarter('redis:7');
    await expect(startInfra(plan, start)).rejects.toThrow('pull redis:7: denied');
    expect(log).toEqual(['start nats:2.12 4222 -js', 'stop nats:2.12']);
  });

  it('gives a NATS it starts the users: the container its configuration, a private server its own start', async () => {
    const launch = {
      container: { command: ['-c', '/etc/relay/nats-server.conf'], files: [{ content: '{}', target: '/etc/relay/nats-server.conf' }] },
      startPrivate: async (binary: string) => {
        log.push(`private ${binary}`);
        return { url: 'nats://127.0.0.1:41000', stop: async () => void log.push('stop private') };
      },
    };
    const log: string[] = [];
    const files: unknown[] = [];
    const start = async (image: string, _port: number, command: string[], _ready: RegExp, f?: unknown[]): Promise<StartedContainer> => {
      log.push(`start ${image} ${command.join(' ')}`.trim());
      files.push(f);
      return { host: 'localhost', port: 40000, stop: async () => void log.push(`stop ${image}`) };
    };
    const inContainers = await startInfra(await planInfra({}, probes({ docker: true })), start, launch);
    expect(log).toEqual(['start nats:2.12 -c /etc/relay/nats-server.conf', 'start redis:7']);
    expect(files).toEqual([launch.container.files, undefined]);
    await inContainers.stop();

    log.length = 0;
    const local = await startInfra(
      await planInfra({ RELAY_STACK_INFRA: 'local' }, probes({ listening: [6379], natsServer: '/bin/nats-server' })),
      start,
      launch,
    );
    expect(local.natsUrl).toBe('nats://127.0.0.1:41000');
    expect(describeChoice(local.plan.nats)).toContain('with a user per service');
    await local.stop();
    expect(log).toEqual(['private /bin/nats-server', 'stop private']);
  });

  it('starts nothing for env and local choices', async () => {
    const plan = await planInfra({ NATS_URL: 'nats://n:1' }, probes({ listening: [6379] }));
    const { start, log } = fakeStarter();
    const infra = await startInfra(plan, start);
    expect([infra.natsUrl, infra.redisUrl]).toEqual(['nats://n:1', 'redis://127.0.0.1:6379']);
    expect(log).toEqual([]);
  });
});

describe('tcpListening', () => {
  it('tells a listening port from a closed one', async () => {
    const server: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    expect(await tcpListening('127.0.0.1', port)).toBe(true);
    await new Promise<void>((r) => server.close(() => r()));
    expect(await tcpListening('127.0.0.1', port)).toBe(false);
  });
});

// With a Docker engine (as .ci/containers.sh runs it): the real containers, from RELAY_NATS_IMAGE /
// RELAY_REDIS_IMAGE, found ready by their log lines (official images have no shell to probe ports).
describe.runIf(['1', 'true', 'yes'].includes(process.env.RELAY_TEST_CONTAINERS ?? ''))('startContainer', () => {
  it('starts NATS and Redis in containers that accept connections, and removes them', async () => {
    const env = { ...process.env, NATS_URL: '', REDIS_URL: '', RELAY_STACK_INFRA: 'containers' };
    const infra = await startInfra(await planInfra(env, realProbes), startContainer);
    const addresses = [infra.natsUrl, infra.redisUrl].map((u) => new URL(u));
    try {
      for (const a of addresses) expect(await tcpListening(a.hostname, Number(a.port))).toBe(true);
    } finally {
      await infra.stop();
    }
    for (const a of addresses) expect(await tcpListening(a.hostname, Number(a.port))).toBe(false);
  });
});
