/**
 * `npm run stack`: the whole relay on one machine. NATS and Redis from the environment, containers
 * or this machine; the five services as child processes; with no RELAY_CONFIG, a demo configuration
 * that delivers to a local capture SMTP server. Ctrl-C stops everything it started.
 */
import { randomBytes } from 'node:crypto';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readEnv } from '@relay/config';
import { exportDefaults, isConfigError, SERVICE_NAMES, type ServiceName } from '@relay/core';
import { startCaptureServer } from './capture.js';
import { isStackError, StackError } from './errors.js';
import { createSupervisor, isChildError, type ChildError, type Supervisor } from './children.js';
import { DEMO, demoMasterKey, demoPaths, demoSmtpDoorEnv, demoTlsCa, formatCaptured, readyBanner, writeDemoConfig } from './demo.js';
import { describeChoice, isInfraError, planInfra, realProbes, startInfra, startContainer } from './infra.js';
import { stackInternalAuth } from './internal-ca.js';
import { secretEnvNames, stackChildEnv } from './service-scope.js';
import { busyPorts, credentialsAddress, portFree, serviceArgs, shutdownGraceMs, stackPorts, unbuiltServices, type StackSettings } from './services.js';
import { removeStackFile, STACK_DIR, writeStackFile } from './stack-file.js';
import { ENVELOPE_KEY_HOLDERS, natsUserEnv, prepareStackNats, stackEnvelopeKey } from './nats.js';

const USAGE = `Usage: npm run stack [-- --verbose]

Runs ingest, scheduler, smtp-sender, graph-sender and credentials. Without RELAY_CONFIG it runs a
demo configuration against a local capture SMTP server.

  --verbose   show every log line of every service (also with LOG_LEVEL=debug)

NATS and Redis: NATS_URL / REDIS_URL when set; else containers when a Docker engine answers
(RELAY_NATS_IMAGE, RELAY_REDIS_IMAGE); else 127.0.0.1:4222 and 127.0.0.1:6379 when they listen.
RELAY_STACK_INFRA=containers|local forces one way; with local, a nats-server binary on this machine
(RELAY_NATS_SERVER_BIN, PATH or /usr/sbin) runs as the stack's own NATS. A NATS the stack starts
admits only the services, each as its own user (keys in .relay/nats/).
Ports: RELAY_GRPC_PORT (50051), RELAY_HTTP_PORT (8080), RELAY_CREDENTIALS_PORT (50052);
demo SMTP capture: RELAY_DEMO_SMTP_PORT (2525).
Each service gets only the environment it needs; calls to credentials use mutual TLS with a CA
made for the run (.relay/internal-tls/) unless RELAY_INTERNAL_TOKEN or RELAY_INTERNAL_CA is set.`;

const WIDTH = Math.max(...SERVICE_NAMES.map((s) => s.length));

/** Things to undo on the way out, last first. Steps added while it runs are undone too. */
function createCleanup() {
  const steps: Array<() => Promise<void> | void> = [];
  let running: Promise<void> | undefined;
  const runAll = async () => {
    for (let step = steps.pop(); step; step = steps.pop()) {
      try {
        await step();
      } catch (err) {
        console.error(`stack: while stopping: ${(err as Error).message}`);
      }
    }
    running = undefined;
  };
  return {
    add: (step: () => Promise<void> | void) => void steps.push(step),
    run: () => (running ??= runAll()),
  };
}

interface StackContext {
  root: string;
  env: Record<string, string | undefined>;
  print: (line: string) => void;
  cleanup: ReturnType<typeof createCleanup>;
  supervisor: Supervisor;
  stopping: () => boolean;
}

/** Brings everything up, registering how to undo each step as it goes. Throws on the first failure. */
async function startStack({ root, env, print, cleanup, supervisor, stopping }: StackContext): Promise<void> {
  const ports = stackPorts(env);
  const unbuilt = unbuiltServices(root);
  if (unbuilt.length > 0)
    throw new StackError(`not built: ${unbuilt.map((n) => `services/${n}`).join(', ')}. Run npm run build (npm run stack does it first).`);

  const plan = await planInfra(env, realProbes);
  if (plan.nats.source === 'container' || plan.redis.source === 'container') print('stack: starting containers (the first run pulls the images)...');
  // A NATS the stack starts itself admits only the services, each as its own user.
  const stackDir = join(root, STACK_DIR);
  const ownNats = plan.nats.source === 'container' || plan.nats.source === 'private' ? prepareStackNats(stackDir, readEnv(env).busPrefix) : undefined;
  const infra = await startInfra(plan, startContainer, ownNats?.launch);
  cleanup.add(() => infra.stop());
  if (stopping()) return;
  for (const choice of [infra.plan.nats, infra.plan.redis]) print(`stack: ${describeChoice(choice)}`);

  const busy = await busyPorts(ports);
  if (busy.length > 0) throw new StackError(busy.join('\n'));

  let configPath = env.RELAY_CONFIG;
  let masterKey = env.RELAY_MASTER_KEY;
  let demo: { captureDir: string; smtpPort?: number } | undefined;
  let doorEnv: Record<string, string> = {};
  if (!configPath) {
    const paths = demoPaths(root);
    const capture = await startCaptureServer({
      dir: paths.captureDir,
      port: demoSmtpPort(env),
      onMessage: (msg) => print(formatCaptured(msg, root)),
      onError: (err) => print(`stack: capture SMTP server: ${err.message}`),
    });
    cleanup.add(() => capture.close());
    configPath = writeDemoConfig(root, { host: capture.host, port: capture.port });
    masterKey ||= demoMasterKey(root);
    demo = { captureDir: paths.captureDir };
    doorEnv = demoSmtpDoorEnv(root, env, await portFree(DEMO.submissionPort));
    print(`stack: demo mode: capture SMTP server on ${capture.host}:${capture.port}, config ${relative(root, configPath)}`);
  }
  if (stopping()) return;

  cleanup.add(async () => {
    // Ingest and the senders first, so their in-flight work can still reach credentials.
    await supervisor.stop(SERVICE_NAMES.filter((s) => s !== 'credentials'));
    await supervisor.stop();
  });
  const settings: StackSettings = {
    natsUrl: infra.natsUrl,
    redisUrl: infra.redisUrl,
    configPath: resolve(configPath),
    masterKey,
    ports,
    credentialsAddr: `127.0.0.1:${ports.credentials}`,
    // The demo's keys are public: keep it off the network unless RELAY_HOST says otherwise.
    host: demo ? '127.0.0.1' : undefined,
  };
  // Mutual TLS toward credentials from a CA made for this run, unless the caller set up its own.
  const internal = hasInternalAuth(env) ? {} : await stackInternalAuth(join(root, '.relay', 'internal-tls'), print);
  settings.internalToken = internal.token;
  settings.publicTls = Boolean(doorEnv.RELAY_TLS_CERT ?? env.RELAY_TLS_CERT);
  const secrets = secretEnvNames(settings.configPath);
  const envelopeKey = stackEnvelopeKey(stackDir, env);
  const telemetry = exportDefaults(env);
  if (telemetry.OTEL_TRACES_EXPORTER)
    print('stack: no OTLP collector configured: trace and metric export off (/metrics still served); set OTEL_EXPORTER_OTLP_ENDPOINT to export');
  const consoleDemoToken = demo ? randomBytes(32).toString('base64url') : undefined;
  const spec = (name: ServiceName) => ({
    name,
    command: process.execPath,
    args: serviceArgs(root, name),
    env: {
      ...stackChildEnv(name, { ...telemetry, ...env }, settings, secrets, internal.tls),
      ...natsUserEnv(env, ownNats, name),
      // The demo's SMTP door (and so TLS on gRPC, which shares the pair) is ingest's alone.
      ...(name === 'ingest' ? doorEnv : {}),
      // The demo's one-time console sign-in: ingest's alone.
      RELAY_CONSOLE_DEMO_TOKEN: name === 'ingest' ? consoleDemoToken : undefined,
      // Only ingest (signs) and the senders (check) hold the envelope key.
      RELAY_ENVELOPE_KEY: ENVELOPE_KEY_HOLDERS.includes(name) ? envelopeKey : undefined,
      RELAY_ENVELOPE_KEY_OLD: ENVELOPE_KEY_HOLDERS.includes(name) ? env.RELAY_ENVELOPE_KEY_OLD : undefined,
      RELAY_ENVELOPE_KEY_FILE: undefined,
    },
    cwd: root,
  });

  const credentials = await supervisor.start(spec('credentials'));
  settings.credentialsAddr = credentialsAddress(ports.credentials, credentials.ports, internal.tls?.host);
  const started = await Promise.all(SERVICE_NAMES.filter((s) => s !== 'credentials').map((name) => supervisor.start(spec(name))));
  if (stopping()) return;

  const ingestPorts = started.find((c) => c.name === 'ingest')?.ports;
  const address = `127.0.0.1:${ingestPorts?.grpc ?? ports.grpc}`;
  if (demo && ingestPorts?.smtp) demo.smtpPort = ingestPorts.smtp;
  writeStackFile(
    root,
    demo
      ? { address, apiKey: DEMO.apiKey, sender: DEMO.sender, captureDir: demo.captureDir, tlsCaFile: env.RELAY_TLS_CERT ? undefined : demoTlsCa(root) }
      : { address },
  );
  cleanup.add(() => removeStackFile(root));
  const consoleUrl = (env.RELAY_PUBLIC_URL || `${settings.publicTls ? 'https' : 'http'}://localhost:${ingestPorts?.http ?? ports.http}`).replace(/\/+$/, '');
  const demoLink = consoleDemoToken ? `${consoleUrl}/auth/demo?token=${consoleDemoToken}` : undefined;
  print(readyBanner({ address, demo, root, graceMs: shutdownGraceMs(env), console: { url: consoleUrl, demoLink } }));
}

function main(): void {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  let values;
  try {
    ({ values } = parseArgs({ args: process.argv.slice(2), options: { verbose: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    console.error(`stack: ${(err as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const env = process.env;
  const print = (line: string) => console.log(line);
  const cleanup = createCleanup();

  let stopping = false;
  let startup: Promise<void> = Promise.resolve();
  const shutdown = (code: number) => {
    if (stopping) return;
    stopping = true;
    process.exitCode = code;
    void (async () => {
      await cleanup.run();
      // Startup notices `stopping` (or fails as its children stop); undo what it added meanwhile.
      await startup;
      await cleanup.run();
      print(code === 0 ? 'stack: stopped' : 'stack: stopped after a failure');
      // testcontainers may keep sockets open past the containers it removed.
      process.exit();
    })();
  };

  const supervisor = createSupervisor({
    print,
    verbose: Boolean(values.verbose) || ['debug', 'trace'].includes(env.LOG_LEVEL ?? ''),
    width: WIDTH,
    onUnexpectedExit: (err) => {
      if (stopping) return;
      reportChildError(err);
      console.error('stack: a service died; stopping the stack');
      shutdown(1);
    },
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      print(`stack: ${signal}: stopping (Ctrl-C again to kill the services at once)`);
      shutdown(0);
    } else if (signals === 2) {
      print(`stack: ${signal} again: killing the services (once more to quit without cleaning up)`);
      supervisor.kill();
    } else {
      supervisor.kill();
      process.exit(1);
    }
  };
  // SIGHUP too: the children have their own process group, so a closed terminal reaches only us.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);

  startup = startStack({ root, env, print, cleanup, supervisor, stopping: () => stopping }).catch((err: unknown) => {
    if (stopping) return;
    if (isChildError(err)) reportChildError(err);
    else if (isInfraError(err) || isConfigError(err) || isStackError(err)) console.error(`stack: ${err.message}`);
    else console.error('stack: failed to start:', err);
    shutdown(1);
  });
}

function reportChildError(err: ChildError): void {
  console.error(`stack: ${err.message}`);
  // The lines already on the terminal are not repeated: a one-line config error shows once.
  if (err.unshownLines.length > 0) console.error(`stack: last lines of ${err.child} not shown above:\n${err.unshownLines.map((l) => `  ${l}`).join('\n')}`);
}

function hasInternalAuth(env: Record<string, string | undefined>): boolean {
  return Boolean(env.RELAY_INTERNAL_TOKEN || env.RELAY_INTERNAL_TOKEN_FILE || env.RELAY_INTERNAL_CA);
}

function demoSmtpPort(env: Record<string, string | undefined>): number {
  const v = env.RELAY_DEMO_SMTP_PORT;
  if (!v) return DEMO.smtpPort;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new StackError(`RELAY_DEMO_SMTP_PORT: "${v}" is not a port (0-65535)`);
  return n;
}

main();
