/**
 * npm run bench:smtp — the SMTP door against Postfix, in one run. smtp-source (Postfix's load
 * client) sends BENCH_MESSAGES (5000) messages of BENCH_SIZE (2048) bytes over BENCH_SESSIONS (10)
 * kept-open sessions into the relay's SMTP door (ingest → scheduler → smtp-sender → smtp-sink);
 * delivered/s is counted at the sink. Then an open-loop client offers BENCH_RATE (500) messages/s
 * for BENCH_SECONDS (10) and times each 250 after DATA (from the final "." to the reply). Then the
 * same smtp-source job through a private Postfix (../shared/bench/postfix-bench.sh), and the ratio.
 * Needs Postfix's smtp-source and smtp-sink (apt-get install postfix) and root for the anchor.
 * BENCH_NODE_ARGS adds arguments to ingest's node (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof");
 * BENCH_POSTFIX=0 skips the anchor (for A/B runs of the relay alone).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { benchServiceEnv } from './env.js';
import { createSupervisor } from '../stack/children.js';
import { cpuMs, pidListening } from './proc-cpu.js';
import { serviceArgs } from '../stack/services.js';
import { smtpOpenLoop } from './smtp-load.js';
import { freePort, startSink } from './sink.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const env = process.env;
const num = (name: string, fallback: number) => (env[name] ? Number(env[name]) : fallback);
const N = num('BENCH_MESSAGES', 5000);
const SIZE = num('BENCH_SIZE', 2048);
const SESSIONS = num('BENCH_SESSIONS', 10);
const WARMUP = num('BENCH_WARMUP', 5000);
const RATE = num('BENCH_RATE', 500);
const SECONDS = num('BENCH_SECONDS', 10);
const SMTP_SOURCE = '/usr/sbin/smtp-source';
const SMTP_SINK = '/usr/sbin/smtp-sink';
const natsUrl = env.NATS_URL || 'nats://127.0.0.1:4222';
const FROM = 'sender@bench.test';

function smtpSource(port: number, messages: number): Promise<void> {
  const args = [
    '-d',
    '-s',
    String(SESSIONS),
    '-l',
    String(SIZE),
    '-m',
    String(messages),
    '-f',
    FROM,
    '-t',
    'rcpt@example.test',
    '-M',
    'bench.test',
    `127.0.0.1:${port}`,
  ];
  return new Promise((resolvePromise, reject) => {
    const p = spawn(SMTP_SOURCE, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolvePromise() : reject(new Error(`smtp-source exited with ${code}`))));
  });
}

async function main() {
  for (const bin of [SMTP_SOURCE, SMTP_SINK]) if (!existsSync(bin)) throw new Error(`${bin} is missing: apt-get install postfix`);
  const prefix = `bench-smtp-${Date.now().toString(36)}`;
  const sinkPort = await freePort();
  const sink = startSink(sinkPort);
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-smtp-'));
  const configPath = join(dir, 'relay.yaml');
  // smtp-source cannot authenticate: the bench client submits from an allowed address.
  writeFileSync(
    configPath,
    `clients:\n  - { name: bench, api_key: ${randomBytes(16).toString('hex')}, senders: [bench], smtp: { allow_ips: [127.0.0.1] } }\n` +
      `senders:\n  - id: bench\n    from: ${FROM}\n    transport: smtp\n` +
      `    smtp: { host: 127.0.0.1, port: ${sinkPort}, security: none }\n`,
  );
  const certs = join(root, 'libs', 'testkit', 'certs');
  const base = {
    ...benchServiceEnv(env, { natsUrl, configPath, prefix }),
    RELAY_TLS_CERT: join(certs, 'server.pem'),
    RELAY_TLS_KEY: join(certs, 'server-key.pem'),
  };
  const sup = createSupervisor({ print: (l) => process.stderr.write(`${l}\n`), graceMs: 10_000 });
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
  try {
    const nodeArgs = env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
    const start = (name: 'credentials' | 'ingest' | 'scheduler' | 'smtp-sender', extra: Record<string, string> = {}) =>
      sup.start({ name, command: process.execPath, args: serviceArgs(root, name, name === 'ingest' ? nodeArgs : []), env: { ...base, ...extra } });
    const creds = await start('credentials');
    const addr = { RELAY_CREDENTIALS_ADDR: `127.0.0.1:${creds.ports.grpc}` };
    const [ingest, scheduler, smtpSender] = await Promise.all([
      start('ingest', { ...addr, RELAY_SMTP_PORT: '0' }),
      start('scheduler', addr),
      start('smtp-sender', addr),
    ]);
    const door = ingest!.ports.smtp!;
    // CPU each process spent per delivered message (from /proc): comparable across runs on a busy machine.
    const processes: Array<[string, number | undefined]> = [
      ['ingest', ingest!.pid],
      ['scheduler', scheduler!.pid],
      ['smtp_sender', smtpSender!.pid],
      ['nats', pidListening(natsUrl)],
    ];

    process.stderr.write(`warm-up: ${WARMUP} messages (not counted)\n`);
    await smtpSource(door, WARMUP);
    await sink.reaches(WARMUP);

    process.stderr.write(`throughput: smtp-source, ${N} messages of ${SIZE} bytes over ${SESSIONS} sessions\n`);
    const before = sink.received();
    const cpu0 = processes.map(([, pid]) => cpuMs(pid));
    const t0 = performance.now();
    await smtpSource(door, N);
    await sink.reaches(before + N);
    const deliveredPerS = N / ((performance.now() - t0) / 1000);
    const cpuPerMessage = processes.map(([name, pid], i) => {
      const a = cpu0[i];
      const b = cpuMs(pid);
      return `${name}=${a === undefined || b === undefined ? 'n/a' : ((b - a) / N).toFixed(3)}`;
    });

    process.stderr.write(`latency: ${RATE} messages/s offered for ${SECONDS} s\n`);
    const afterThroughput = sink.received();
    const lat = await smtpOpenLoop({ port: door, rate: RATE, seconds: SECONDS, sessions: 2 * SESSIONS, size: SIZE, from: FROM, to: 'rcpt@example.test' });
    await sink.reaches(afterThroughput + lat.count - lat.errors);

    const lines = [
      `messages=${N} size_bytes=${SIZE} sessions=${SESSIONS}`,
      `relay_smtp_delivered_per_s=${deliveredPerS.toFixed(0)}`,
      `cpu_ms_per_message ${cpuPerMessage.join(' ')}`,
      `latency_offered_per_s=${RATE} latency_rate_per_s=${lat.achievedPerS.toFixed(0)} data_250_p50_ms=${lat.p50Ms.toFixed(1)} data_250_p99_ms=${lat.p99Ms.toFixed(1)} data_250_max_ms=${lat.maxMs.toFixed(1)} errors=${lat.errors}`,
    ];
    console.log(lines.join('\n'));

    await sup.stop();
    sink.proc.kill();
    if (env.BENCH_POSTFIX === '0') return;
    const script = resolve(root, '..', 'shared', 'bench', 'postfix-bench.sh');
    process.stderr.write(`postfix anchor: ${script}\n`);
    const r = spawnSync('bash', [script], {
      env: {
        ...env,
        MSGS: String(N),
        SIZE: String(SIZE),
        SESSIONS: String(SESSIONS),
        RUNS: '1',
        WARMUP: String(WARMUP),
        IN_PORT: String(await freePort()),
        SINK_PORT: String(await freePort()),
      },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const m = /postfix_relay_msgs_per_s=([\d.]+)/.exec(r.stdout ?? '');
    if (m) {
      console.log(`postfix_relay_msgs_per_s=${m[1]}`);
      console.log(`ratio_delivered_vs_postfix=${(deliveredPerS / Number(m[1])).toFixed(2)} (JetStream 2.9 does not fsync each message; Postfix does)`);
    } else {
      console.log(`postfix anchor did not report (exit ${r.status})`);
    }
  } finally {
    await sup.stop();
    sink.proc.kill();
    const jsm = await jetstreamManager(nc);
    const streamPrefix = prefix.toUpperCase().replace(/-/g, '_');
    for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`${streamPrefix}_`)) await jsm.streams.delete(s.config.name).catch(() => {});
    await nc.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:smtp: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
