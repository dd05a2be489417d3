import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isConfigError, SERVICE_NAMES, SERVICE_NODE_FLAGS } from '@relay/core';
import { describe, expect, it } from 'vitest';
import { scopeServiceEnv, secretEnvNames } from './service-scope.js';
import { busyPorts, credentialsAddress, serviceArgs, stackServiceEnv, stackPorts, unbuiltServices, type StackSettings } from './services.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const settings: StackSettings = {
  natsUrl: 'nats://127.0.0.1:4222',
  redisUrl: 'redis://127.0.0.1:6379',
  configPath: '/repo/.relay/demo-relay.yaml',
  masterKey: 'a2V5',
  ports: { grpc: 50051, http: 8080, credentials: 50052 },
  credentialsAddr: '127.0.0.1:50052',
  host: '127.0.0.1',
};

describe('stackServiceEnv', () => {
  it("puts the stack's choices over the caller's environment", () => {
    const env = stackServiceEnv({ PATH: '/bin', NATS_URL: 'nats://elsewhere:1', OTEL_SERVICE_NAME: 'x', RELAY_METRICS_PORT: '9000' }, settings);
    expect(env).toMatchObject({
      PATH: '/bin',
      OTEL_SERVICE_NAME: 'x',
      NATS_URL: 'nats://127.0.0.1:4222',
      REDIS_URL: 'redis://127.0.0.1:6379',
      RELAY_CONFIG: '/repo/.relay/demo-relay.yaml',
      RELAY_MASTER_KEY: 'a2V5',
      RELAY_GRPC_PORT: '50051',
      RELAY_HTTP_PORT: '8080',
      RELAY_CREDENTIALS_PORT: '50052',
      RELAY_CREDENTIALS_ADDR: '127.0.0.1:50052',
      RELAY_METRICS_PORT: '0',
      RELAY_HOST: '127.0.0.1',
      RELAY_PUBLIC_URL: 'http://localhost:8080',
    });
  });

  it('names https in the public URL when ingest serves its HTTP port over TLS', () => {
    expect(stackServiceEnv({}, { ...settings, publicTls: true }).RELAY_PUBLIC_URL).toBe('https://localhost:8080');
  });

  it("keeps the caller's RELAY_HOST and RELAY_PUBLIC_URL", () => {
    const env = stackServiceEnv({ RELAY_HOST: '0.0.0.0', RELAY_PUBLIC_URL: 'https://relay.campus.example' }, settings);
    expect(env.RELAY_HOST).toBe('0.0.0.0');
    expect(env.RELAY_PUBLIC_URL).toBe('https://relay.campus.example');
  });
});

describe('ports', () => {
  it('reads them with the services’ own parser', () => {
    expect(stackPorts({})).toEqual({ grpc: 50051, http: 8080, credentials: 50052 });
    expect(stackPorts({ RELAY_GRPC_PORT: '0', RELAY_CREDENTIALS_PORT: '6000' })).toMatchObject({ grpc: 0, credentials: 6000 });
    let err: unknown;
    try {
      stackPorts({ RELAY_HTTP_PORT: 'eighty' });
    } catch (e) {
      err = e;
    }
    expect(isConfigError(err) && err.message).toContain('RELAY_HTTP_PORT');
  });

  it('names the variable that moves a busy or doubled port', async () => {
    const busy = await busyPorts({ grpc: 50051, http: 50051, credentials: 0 }, async (p) => p !== 50051);
    expect(busy).toEqual([
      'port 50051 (ingest gRPC) is in use: stop what holds it, or set RELAY_GRPC_PORT to another port (0 = any free port)',
      'RELAY_HTTP_PORT=50051 (ingest HTTP) is the same port as RELAY_GRPC_PORT',
    ]);
    expect(await busyPorts({ grpc: 1, http: 2, credentials: 3 }, async () => true)).toEqual([]);
  });

  it('finds where the others reach credentials', () => {
    expect(credentialsAddress(50052, {})).toBe('127.0.0.1:50052');
    expect(credentialsAddress(0, { grpc: 41234, http: 8080 })).toBe('127.0.0.1:41234');
    expect(() => credentialsAddress(0, {})).toThrow('set RELAY_CREDENTIALS_PORT');
  });
});

describe('unbuiltServices', () => {
  it('lists services without dist/main.js', () => {
    const root = mkdtempSync(join(tmpdir(), 'relay-services-'));
    try {
      for (const name of ['credentials', 'ingest', 'scheduler', 'smtp-sender']) {
        mkdirSync(join(root, 'services', name, 'dist'), { recursive: true });
        writeFileSync(join(root, 'services', name, 'dist', 'main.js'), '');
      }
      expect(unbuiltServices(root)).toEqual(['graph-sender']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('how services are started', () => {
  it("the stack and the benchmarks: the services' node flags, extra flags after them, then the telemetry module", () => {
    const args = serviceArgs('/repo', 'ingest', ['--cpu-prof']);
    expect(args.slice(0, SERVICE_NODE_FLAGS.length)).toEqual(SERVICE_NODE_FLAGS);
    expect(args.slice(SERVICE_NODE_FLAGS.length)).toEqual([
      '--cpu-prof',
      '--import',
      'file:///repo/libs/telemetry/dist/register.js',
      '/repo/services/ingest/dist/main.js',
    ]);
  });

  it('the container image and `npm start` in each service pass the same flags', () => {
    const entrypoint = readFileSync(join(repo, 'deploy', 'Dockerfile'), 'utf8').match(/^ENTRYPOINT (\[.*\])$/m)?.[1];
    expect(entrypoint).toBeDefined();
    const image = JSON.parse(entrypoint!) as string[];
    for (const flag of SERVICE_NODE_FLAGS) expect(image.slice(0, image.indexOf('--import'))).toContain(flag);
    for (const name of SERVICE_NAMES) {
      const start = (JSON.parse(readFileSync(join(repo, 'services', name, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
      for (const flag of SERVICE_NODE_FLAGS) expect(start.split(' '), name).toContain(flag);
    }
  });
});

describe('scopeServiceEnv', () => {
  const shell = {
    PATH: '/bin',
    OTEL_SERVICE_NAME: 'x',
    RELAY_MASTER_KEY: 'mk',
    RELAY_MASTER_KEY_OLD: 'old',
    RELAY_INTERNAL_TOKEN: 't',
    APP_KEY: 'k',
    SMTP_PW: 'pw',
    GITHUB_TOKEN: 'gh',
  };
  const secrets = { callers: ['APP_KEY'], others: ['SMTP_PW'] };

  it("gives credentials the senders' secrets and the master key, not the API keys", () => {
    const env = scopeServiceEnv('credentials', shell, secrets);
    expect(env).toMatchObject({ RELAY_MASTER_KEY: 'mk', SMTP_PW: 'pw', RELAY_INTERNAL_TOKEN: 't' });
    expect(env.APP_KEY).toBeUndefined();
  });

  it('gives ingest the API keys and the internal token, nothing else secret', () => {
    expect(scopeServiceEnv('ingest', shell, secrets)).toEqual({ PATH: '/bin', OTEL_SERVICE_NAME: 'x', RELAY_INTERNAL_TOKEN: 't', APP_KEY: 'k' });
  });

  it("keeps ingest's admin token for credentials and the public TLS pair for ingest and credentials", () => {
    const more = { ...shell, RELAY_INTERNAL_ADMIN_TOKEN: 'admin', RELAY_TLS_CERT: '/c.pem', RELAY_TLS_KEY: '/k.pem' };
    expect(scopeServiceEnv('credentials', more, secrets)).toMatchObject({
      RELAY_INTERNAL_ADMIN_TOKEN: 'admin',
      RELAY_TLS_CERT: '/c.pem',
      RELAY_TLS_KEY: '/k.pem',
    });
    expect(scopeServiceEnv('ingest', more, secrets)).toEqual({
      PATH: '/bin',
      OTEL_SERVICE_NAME: 'x',
      RELAY_INTERNAL_TOKEN: 't',
      APP_KEY: 'k',
      RELAY_TLS_CERT: '/c.pem',
      RELAY_TLS_KEY: '/k.pem',
    });
    expect(scopeServiceEnv('smtp-sender', more, secrets)).toEqual({ PATH: '/bin', OTEL_SERVICE_NAME: 'x', RELAY_INTERNAL_TOKEN: 't' });
  });

  it("gives the console's cookie key and demo token to ingest only", () => {
    const more = { ...shell, RELAY_CONSOLE_SESSION_KEY: 'sk', RELAY_CONSOLE_DEMO_TOKEN: 'dt' };
    expect(scopeServiceEnv('ingest', more, secrets)).toMatchObject({ RELAY_CONSOLE_SESSION_KEY: 'sk', RELAY_CONSOLE_DEMO_TOKEN: 'dt' });
    for (const name of ['credentials', 'scheduler', 'smtp-sender', 'graph-sender'] as const) {
      const env = scopeServiceEnv(name, more, secrets);
      expect(env.RELAY_CONSOLE_SESSION_KEY, name).toBeUndefined();
      expect(env.RELAY_CONSOLE_DEMO_TOKEN, name).toBeUndefined();
    }
  });

  it('gives the senders the internal token, the scheduler no secret at all', () => {
    expect(scopeServiceEnv('smtp-sender', shell, secrets)).toEqual({ PATH: '/bin', OTEL_SERVICE_NAME: 'x', RELAY_INTERNAL_TOKEN: 't' });
    expect(scopeServiceEnv('scheduler', shell, secrets)).toEqual({ PATH: '/bin', OTEL_SERVICE_NAME: 'x' });
  });

  it('lists the env: secrets of relay.yaml by who reads them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-scope-'));
    const path = join(dir, 'relay.yaml');
    writeFileSync(
      path,
      `clients: [{ name: a, api_key: env:APP_KEY, senders: [s] }]
senders:
  - { id: s, from: s@campus.example, transport: smtp, smtp: { host: 127.0.0.1, port: 2525, security: none, auth: { type: password, user: s, password: env:SMTP_PW } } }
`,
    );
    try {
      expect(secretEnvNames(path)).toEqual({ callers: ['APP_KEY'], others: ['SMTP_PW'] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
