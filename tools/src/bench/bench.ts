/**
 * npm run bench — sends N messages through a running pipeline (ingest → scheduler → smtp-sender)
 * to a local SMTP sink and prints accepted/s, delivered/s end to end and SendMail latency.
 * Knobs: BENCH_WARMUP (20000 messages first, not counted), BENCH_MESSAGES (5000), BENCH_SIZE
 * (2048 bytes), BENCH_CONCURRENCY (64), BENCH_RATE (500/s; BENCH_RATES=100,200,... for several in
 * turn) and BENCH_SECONDS (10) for the latency phase (each rate after BENCH_LATENCY_WARMUP_S (5)
 * seconds at it, not counted),
 * BENCH_POSTFIX=1 to run the Postfix anchor (../shared/bench/postfix-bench.sh) in the same run and
 * print the ratio. Diagnostics: BENCH_LATENCY_LOG=file (each call's start and latency, and every
 * process' CPU each 100 ms), BENCH_NODE_ARGS (extra node arguments for every service),
 * BENCH_SETTLE_MS (an idle pause before the latency phase), BENCH_PAUSE=scheduler,smtp-sender
 * (those services stopped while each rate is measured), BENCH_CLIENT=typed (SendMail through
 * @relay/client instead of the bare HTTP/2 client in the tuned profile).
 * BENCH_PROFILES (default `defaults,tuned`): `defaults` runs the services with the configuration a
 * user gets (no pool settings, no OTEL_* settings) and calls SendMail through @relay/client;
 * `tuned` sets the sink sender's pool (10 connections, BENCH_POOL_MESSAGES messages each) and calls
 * through the bare HTTP/2 client. Each profile starts its own services.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { createRelayClient } from '@relay/client';
import { createBareClient } from './bare-client.js';
import { bodyOfSize, closedLoop, openLoop, type SendInit } from './load.js';
import { cpuMs, pidListening, syscalls } from './proc-cpu.js';
import { benchServiceEnv } from './env.js';
import { createSupervisor } from '../stack/children.js';
import { serviceArgs } from '../stack/services.js';
import { freePort, startSink } from './sink.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const env = process.env;
const num = (name: string, fallback: number) => (env[name] ? Number(env[name]) : fallback);
const N = num('BENCH_MESSAGES', 5000);
const SIZE = num('BENCH_SIZE', 2048);
const CONCURRENCY = num('BENCH_CONCURRENCY', 64);
const RATE = num('BENCH_RATE', 500);
/** BENCH_RATES=100,200,...: the latency phase at each of these rates in turn (default BENCH_RATE). */
const RATES = (env.BENCH_RATES ?? String(RATE))
  .split(',')
  .map((r) => Number(r.trim()))
  .filter((r) => r > 0);
const SECONDS = num('BENCH_SECONDS', 10);
/**
 * Messages sent before the steady figures are taken. V8 compiles a function with its top tier only
 * after some thousands of calls, and every message passes through every service, so all of them
 * compile their per-message code at about the same message count, taking the cores for a moment
 * (docs/benchmarks.md, Method). The first BENCH_MESSAGES of the warm-up are reported on their own.
 */
const WARMUP = num('BENCH_WARMUP', 20_000);
const LATENCY_WARMUP_S = num('BENCH_LATENCY_WARMUP_S', 5);
/** BENCH_PAUSE=scheduler,smtp-sender: services stopped while each rate's latency is measured. */
const pausedDuringLatency = (env.BENCH_PAUSE ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
  .map((s) => {
    if (s !== 'scheduler' && s !== 'smtp-sender') throw new Error(`BENCH_PAUSE: "${s}" is not scheduler or smtp-sender`);
    return s;
  });
const natsUrl = env.NATS_URL || 'nats://127.0.0.1:4222';
const redisUrl = env.REDIS_URL || 'redis://127.0.0.1:6379';

type Profile = 'defaults' | 'tuned';
const PROFILES = (env.BENCH_PROFILES ?? 'defaults,tuned')
  .split(',')
  .map((p) => p.trim())
  .filter(Boolean)
  .map((p) => {
    if (p !== 'defaults' && p !== 'tuned') throw new Error(`BENCH_PROFILES: "${p}" is not defaults or tuned`);
    return p as Profile;
  });

/** The sink sender's SMTP settings: the defaults a user gets, or the tuned pool. */
function senderSmtp(profile: Profile, sinkPort: number): string {
  const pool = profile === 'tuned' ? `, pool: { max_connections: 10, max_messages: ${num('BENCH_POOL_MESSAGES', 1000)} }` : '';
  return `    smtp: { host: 127.0.0.1, port: ${sinkPort}, security: none${pool} }\n`;
}

async function main() {
  const results: Array<{ profile: Profile; deliveredPerS: number }> = [];
  for (const profile of PROFILES) {
    console.log(`profile=${profile}`);
    results.push({ profile, deliveredPerS: await runProfile(profile) });
  }
  if (env.BENCH_POSTFIX !== '1') return;
  const script = resolve(root, '..', 'shared', 'bench', 'postfix-bench.sh');
  process.stderr.write(`postfix anchor: ${script}\n`);
  const r = spawnSync('bash', [script], {
    env: { ...env, MSGS: String(N), SIZE: String(SIZE), SESSIONS: '10', RUNS: '2', WARMUP: String(N) },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const m = /postfix_relay_msgs_per_s=([\d.]+)/.exec(r.stdout ?? '');
  if (!m) {
    console.log(`postfix anchor did not report (exit ${r.status})`);
    return;
  }
  console.log(`postfix_relay_msgs_per_s=${m[1]}`);
  for (const { profile, deliveredPerS } of results) {
    console.log(
      `ratio_delivered_vs_postfix profile=${profile} ratio=${(deliveredPerS / Number(m[1])).toFixed(2)} (JetStream 2.9 does not fsync each message; Postfix does)`,
    );
  }
}

async function runProfile(profile: Profile): Promise<number> {
  const prefix = `bench-${Date.now().toString(36)}`;
  const sinkPort = await freePort();
  const sink = startSink(sinkPort);
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-'));
  const apiKey = randomBytes(16).toString('hex');
  const configPath = join(dir, 'relay.yaml');
  writeFileSync(
    configPath,
    `clients:\n  - { name: bench, api_key: ${apiKey}, senders: [bench] }\n` +
      `senders:\n  - id: bench\n    from: bench@relay.localhost\n    transport: smtp\n` +
      senderSmtp(profile, sinkPort),
  );
  const base = { ...benchServiceEnv(env, { natsUrl, configPath, prefix }), REDIS_URL: redisUrl };
  // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", go to every service's node.
  const nodeArgs = env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const sup = createSupervisor({ print: (l) => process.stderr.write(`${l}\n`), graceMs: 10_000 });
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
  let cleanup = async () => {};
  try {
    const start = (name: 'credentials' | 'ingest' | 'scheduler' | 'smtp-sender', extra: Record<string, string> = {}) =>
      sup.start({ name, command: process.execPath, args: serviceArgs(root, name, nodeArgs), env: { ...base, ...extra } });
    const creds = await start('credentials');
    const addr = { RELAY_CREDENTIALS_ADDR: `127.0.0.1:${creds.ports.grpc}` };
    const [ingest, scheduler, smtpSender] = await Promise.all([start('ingest', addr), start('scheduler', addr), start('smtp-sender', addr)]);
    const natsPid = pidListening(natsUrl);
    const processes: Array<[string, number | undefined]> = [
      ['ingest', ingest!.pid],
      ['scheduler', scheduler!.pid],
      ['smtp-sender', smtpSender!.pid],
      ['nats', natsPid],
      // The load generator (this process: the SendMail calls and reading the sink's counter).
      ['bench', process.pid],
    ];
    // BENCH_LATENCY_LOG: each process' CPU every 100 ms goes there too, next to each call's latency.
    const sampler = env.BENCH_LATENCY_LOG
      ? setInterval(() => {
          const row = [...processes, ['sink', sink.proc.pid]].map(([name, pid]) => `${name}=${cpuMs(pid as number | undefined) ?? 'n/a'}`);
          // The whole machine's busy and idle time (jiffies), for what runs besides ours.
          const all = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
          appendFileSync(
            env.BENCH_LATENCY_LOG!,
            `cpu ${Date.now()} ${row.join(' ')} machine_idle=${all[3]! + all[4]!} machine_total=${all.reduce((a, b) => a + b, 0)}\n`,
          );
        }, 100)
      : undefined;
    // The defaults profile calls as an application does, through @relay/client (grpc-js); the
    // tuned one through the bare HTTP/2 client, which costs the shared cores less (BENCH_CLIENT=typed: not).
    const address = `127.0.0.1:${ingest!.ports.grpc}`;
    const typed = profile === 'defaults' || env.BENCH_CLIENT === 'typed';
    const client = typed ? createRelayClient({ address, apiKey }) : createBareClient(address, apiKey);
    cleanup = async () => {
      clearInterval(sampler);
      client.close();
    };

    // Delivered end to end = received in full by the sink.
    const sentReaches = (n: number) => sink.reaches(n);
    const text = bodyOfSize(SIZE);
    const make = (i: number): SendInit => ({ sender: 'bench', to: [`rcpt${i % 100}@sink.localhost`], subject: `bench ${i}`, text });

    process.stderr.write(`warm-up: ${WARMUP} messages\n`);
    // The first N of them, timed on their own: what a service just started does, before V8 has
    // compiled its per-message code with its top tier.
    const cold0 = performance.now();
    const coldN = Math.min(N, WARMUP);
    await closedLoop(client, coldN, CONCURRENCY, make);
    await sentReaches(coldN);
    const coldPerS = coldN / ((performance.now() - cold0) / 1000);
    await closedLoop(client, WARMUP - coldN, CONCURRENCY, (i) => make(coldN + i));
    await sentReaches(WARMUP);

    process.stderr.write(`throughput: ${N} messages of ${SIZE} bytes, ${CONCURRENCY} concurrent callers\n`);
    const before = sink.received();
    const cpu0 = processes.map(([, pid]) => cpuMs(pid));
    const sys0 = processes.map(([, pid]) => syscalls(pid));
    const t0 = performance.now();
    const tp = await closedLoop(client, N, CONCURRENCY, make);
    await sentReaches(before + N);
    const deliveredPerS = N / ((performance.now() - t0) / 1000);
    const syscallsPerMessage = processes.map(([name, pid], i) => {
      const a = sys0[i];
      const b = syscalls(pid);
      return `${name.replace('-', '_')}=${a === undefined || b === undefined ? 'n/a' : `${((b.reads - a.reads) / N).toFixed(1)}/${((b.writes - a.writes) / N).toFixed(1)}`}`;
    });
    const cpuPerMessage = processes.map(([name, pid], i) => {
      const a = cpu0[i];
      const b = cpuMs(pid);
      return `${name.replace('-', '_')}=${a === undefined || b === undefined ? 'n/a' : ((b - a) / N).toFixed(2)}`;
    });

    // BENCH_SETTLE_MS: a pause before the latency phase (the pipeline idles meanwhile).
    if (num('BENCH_SETTLE_MS', 0) > 0) await new Promise((r) => setTimeout(r, num('BENCH_SETTLE_MS', 0)));
    const latencyLines: string[] = [];
    let latencyCount = 0;
    for (const rate of RATES) {
      // A few seconds at the rate first, not counted: the services' code paths for a steady trickle
      // (instead of the closed-loop burst before) get compiled and their buffers sized.
      if (LATENCY_WARMUP_S > 0) {
        process.stderr.write(`latency warm-up: ${rate} SendMail/s for ${LATENCY_WARMUP_S} s (not counted)\n`);
        const w = await openLoop(client, rate, LATENCY_WARMUP_S, (i) => make(N + latencyCount + i));
        latencyCount += w.count;
      }
      process.stderr.write(`latency: ${rate} SendMail/s for ${SECONDS} s\n`);
      // BENCH_PAUSE (diagnostic): stop these services (SIGSTOP) while the rate is measured, to see
      // what their work costs SendMail's latency; the mail waits for them and is delivered after.
      const paused = pausedDuringLatency.map((n) => ({ scheduler: scheduler!.pid, 'smtp-sender': smtpSender!.pid })[n]!);
      for (const p of paused) process.kill(p, 'SIGSTOP');
      const lat = await openLoop(client, rate, SECONDS, (i) => make(N + latencyCount + i)).finally(() => {
        for (const p of paused) process.kill(p, 'SIGCONT');
      });
      latencyCount += lat.count;
      // Each rate starts with the pipeline drained.
      await sentReaches(before + N + latencyCount);
      latencyLines.push(
        `latency_offered_per_s=${rate} latency_rate_per_s=${lat.achievedPerS.toFixed(0)} sendmail_p50_ms=${lat.p50Ms.toFixed(1)} sendmail_p99_ms=${lat.p99Ms.toFixed(1)} sendmail_max_ms=${lat.maxMs.toFixed(1)} errors=${lat.errors}`,
      );
    }

    const f = (x: number) => x.toFixed(1);
    const lines = [
      `profile=${profile} client=${typed ? 'relay-client' : 'bare-http2'} sink=${sink.kind.replace(/ /g, '_')}`,
      `messages=${N} size_bytes=${SIZE} concurrency=${CONCURRENCY}`,
      `accepted_per_s=${(N / tp.seconds).toFixed(0)}`,
      `delivered_per_s=${deliveredPerS.toFixed(0)} cold_delivered_per_s=${coldPerS.toFixed(0)} (the first ${coldN} after start)`,
      `sendmail_p50_ms_at_max=${f(tp.p50Ms)} sendmail_p99_ms_at_max=${f(tp.p99Ms)}`,
      ...latencyLines,
      `cpu_ms_per_message ${cpuPerMessage.join(' ')}`,
      `syscalls_per_message_read/write ${syscallsPerMessage.join(' ')}`,
      `errors=${tp.errors}`,
    ];
    console.log(lines.join('\n'));
    return deliveredPerS;
  } finally {
    await cleanup();
    await sup.stop();
    sink.proc.kill();
    const jsm = await jetstreamManager(nc);
    for await (const s of jsm.streams.list()) {
      if (s.config.name.toLowerCase().includes(prefix.replace(/-/g, '_')) || s.config.name.includes(prefix))
        await jsm.streams.delete(s.config.name).catch(() => {});
    }
    await nc.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
