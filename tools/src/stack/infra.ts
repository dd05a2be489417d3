import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';
import { stopAllOnce, type ContainerFile, type ContainerStarter, type StartedContainer } from '@relay/testkit/containers';

type Env = Record<string, string | undefined>;

/**
 * Where the stack gets one piece of infrastructure from; `private`: a nats-server of the stack's
 * own, from this machine's binary, with per-service users (RELAY_STACK_INFRA=local).
 */
export type InfraSource = 'env' | 'container' | 'local' | 'private';

export interface InfraNeed {
  name: 'nats' | 'redis';
  label: string;
  envVar: 'NATS_URL' | 'REDIS_URL';
  scheme: 'nats' | 'redis';
  port: number;
  imageVar: 'RELAY_NATS_IMAGE' | 'RELAY_REDIS_IMAGE';
  defaultImage: string;
  command: string[];
  /** The server's own line saying it accepts clients: official images have no shell to probe ports with. */
  readyLog: RegExp;
  install: string;
}

export const INFRA_NEEDS: readonly InfraNeed[] = [
  {
    name: 'nats',
    label: 'NATS JetStream',
    envVar: 'NATS_URL',
    scheme: 'nats',
    port: 4222,
    imageVar: 'RELAY_NATS_IMAGE',
    defaultImage: 'nats:2.12',
    command: ['-js'],
    readyLog: /Server is ready/,
    install: 'install nats-server and run `nats-server -js`',
  },
  {
    name: 'redis',
    label: 'Redis',
    envVar: 'REDIS_URL',
    scheme: 'redis',
    port: 6379,
    imageVar: 'RELAY_REDIS_IMAGE',
    defaultImage: 'redis:7',
    command: [],
    readyLog: /Ready to accept connections/,
    install: 'install redis-server and run `redis-server`',
  },
];

const LOCAL_HOST = '127.0.0.1';

export interface InfraChoice {
  need: InfraNeed;
  source: InfraSource;
  /** Known for env and local; a container's URL is known once it runs. */
  url: string | undefined;
  /** For containers. */
  image: string | undefined;
  /** For a private nats-server: the binary. */
  binary?: string;
}

export interface InfraPlan {
  nats: InfraChoice;
  redis: InfraChoice;
}

/** How the stack may look for infrastructure: RELAY_STACK_INFRA, or both ways in order. */
export type InfraMode = 'auto' | 'containers' | 'local';

export interface InfraProbes {
  /** Whether a Docker (or compatible) engine answers. */
  dockerAvailable(): Promise<boolean>;
  /** Whether something accepts TCP connections there. */
  listening(host: string, port: number): Promise<boolean>;
  /** This machine's nats-server binary, if it has one. */
  natsServerBinary?(): string | undefined;
}

/** No way to get NATS or Redis: the message says what to install or set. */
export class InfraError extends Error {
  override name = 'InfraError';
}

export function isInfraError(err: unknown): err is InfraError {
  return err instanceof InfraError;
}

export function infraMode(env: Env): InfraMode {
  const v = env.RELAY_STACK_INFRA?.trim().toLowerCase();
  if (!v || v === 'auto') return 'auto';
  if (v === 'containers' || v === 'local') return v;
  throw new InfraError(`RELAY_STACK_INFRA: "${env.RELAY_STACK_INFRA}" is not one of containers, local (or unset to choose by itself)`);
}

/**
 * Decides where NATS and Redis come from, in the order of DESIGN.md: NATS_URL / REDIS_URL when set;
 * else containers when a Docker engine answers; else the default local addresses when something
 * listens there; else an InfraError saying what to install. RELAY_STACK_INFRA forces one way.
 */
export async function planInfra(env: Env, probes: InfraProbes): Promise<InfraPlan> {
  const mode = infraMode(env);
  const choices = new Map<InfraNeed['name'], InfraChoice>();
  const open: InfraNeed[] = [];
  for (const need of INFRA_NEEDS) {
    const url = env[need.envVar]?.trim();
    if (url) choices.set(need.name, { need, source: 'env', url, image: undefined });
    else open.push(need);
  }

  if (open.length > 0 && mode !== 'local') {
    if (await probes.dockerAvailable()) {
      for (const need of open) choices.set(need.name, { need, source: 'container', url: undefined, image: env[need.imageVar]?.trim() || need.defaultImage });
      open.length = 0;
    } else if (mode === 'containers') {
      throw new InfraError(
        `RELAY_STACK_INFRA=containers, but no Docker engine answers. Start Docker (or set DOCKER_HOST), ` +
          `or unset RELAY_STACK_INFRA to use ${open.map((n) => n.label).join(' and ')} on this machine.`,
      );
    }
  }

  const missing: InfraNeed[] = [];
  for (const need of open) {
    const binary = mode === 'local' && need.name === 'nats' ? probes.natsServerBinary?.() : undefined;
    if (binary) {
      choices.set(need.name, { need, source: 'private', url: undefined, image: undefined, binary });
    } else if (await probes.listening(LOCAL_HOST, need.port)) {
      choices.set(need.name, { need, source: 'local', url: `${need.scheme}://${LOCAL_HOST}:${need.port}`, image: undefined });
    } else {
      missing.push(need);
    }
  }
  if (missing.length > 0) throw new InfraError(missingMessage(missing, mode));

  const nats = choices.get('nats');
  const redis = choices.get('redis');
  if (!nats || !redis) throw new Error('planInfra: a need was left without a choice');
  return { nats, redis };
}

function missingMessage(missing: InfraNeed[], mode: InfraMode): string {
  const lines = [`The relay needs ${missing.map((n) => n.label).join(' and ')}, and found none:`];
  for (const need of missing) {
    lines.push(`  - ${need.label}: nothing listens on ${LOCAL_HOST}:${need.port}; ${need.install}, or set ${need.envVar}.`);
  }
  if (mode === 'auto') lines.push('Or start a Docker engine: `npm run stack` then runs them in containers and removes them on exit.');
  else lines.push('(RELAY_STACK_INFRA=local: containers were not tried.)');
  return lines.join('\n');
}

/** One line saying where a piece of infrastructure comes from. */
export function describeChoice(choice: InfraChoice): string {
  switch (choice.source) {
    case 'env':
      return `${choice.need.label}: ${choice.url} (${choice.need.envVar})`;
    case 'local':
      return `${choice.need.label}: ${choice.url} (found on this machine)`;
    case 'container':
      return `${choice.need.label}: container ${choice.image}${choice.url ? ` at ${choice.url}` : ''} (removed on exit)`;
    case 'private':
      return `${choice.need.label}: ${choice.binary}${choice.url ? ` at ${choice.url}` : ''} with a user per service (stopped on exit)`;
  }
}

// The one container starter, shared with the tests.
export { startContainer } from '@relay/testkit/containers';
export type { ContainerFile, ContainerStarter, StartedContainer };

/** How the stack runs a NATS of its own with users: the server configuration, in a container or from this machine's binary. */
export interface NatsLaunch {
  container: { command: string[]; files: ContainerFile[] };
  startPrivate(binary: string): Promise<{ url: string; stop(): Promise<void> }>;
}

export interface RunningInfra {
  natsUrl: string;
  redisUrl: string;
  plan: InfraPlan;
  /** Removes the containers the stack started. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts the containers (and the private nats-server) the plan asks for; with `nats`, a NATS it
 * starts admits only the users of that configuration. If one fails, the ones already started go.
 */
export async function startInfra(plan: InfraPlan, startContainer: ContainerStarter, nats?: NatsLaunch): Promise<RunningInfra> {
  const started: StartedContainer[] = [];
  const stop = stopAllOnce(started);

  const resolve = async (choice: InfraChoice): Promise<InfraChoice> => {
    if (choice.source === 'private') {
      if (!nats || !choice.binary) throw new Error('startInfra: a private nats-server needs its launch settings');
      const p = await nats.startPrivate(choice.binary);
      started.push({ host: '127.0.0.1', port: 0, stop: p.stop });
      return { ...choice, url: p.url };
    }
    if (choice.source !== 'container') return choice;
    const withUsers = choice.need.name === 'nats' && nats;
    const c = await startContainer(
      choice.image ?? choice.need.defaultImage,
      choice.need.port,
      withUsers ? nats.container.command : choice.need.command,
      choice.need.readyLog,
      withUsers ? nats.container.files : undefined,
    );
    started.push(c);
    return { ...choice, url: `${choice.need.scheme}://${c.host}:${c.port}` };
  };

  try {
    // One after the other: a failed pull of the first image then starts nothing else.
    const nats = await resolve(plan.nats);
    const redis = await resolve(plan.redis);
    if (!nats.url || !redis.url) throw new Error('startInfra: no URL after start');
    return { natsUrl: nats.url, redisUrl: redis.url, plan: { nats, redis }, stop };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/** Real probes: testcontainers' own runtime detection, and a TCP connect. */
export const realProbes: InfraProbes = {
  async dockerAvailable() {
    try {
      const { getContainerRuntimeClient } = await import('testcontainers');
      await getContainerRuntimeClient();
      return true;
    } catch {
      return false;
    }
  },
  listening: tcpListening,
  natsServerBinary: () => findNatsServer(process.env),
};

/** RELAY_NATS_SERVER_BIN, else nats-server on PATH, else /usr/sbin/nats-server; undefined when none exists. */
export function findNatsServer(env: Env): string | undefined {
  if (env.RELAY_NATS_SERVER_BIN) return existsSync(env.RELAY_NATS_SERVER_BIN) ? env.RELAY_NATS_SERVER_BIN : undefined;
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin'];
  return dirs.map((d) => join(d, 'nats-server')).find((p) => existsSync(p));
}

export function tcpListening(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
