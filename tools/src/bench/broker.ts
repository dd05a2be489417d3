/**
 * npm run bench:broker — NATS alone: how long JetStream takes to ack a publish to a stream while
 * another process reads that stream as the scheduler's intake does, by how the stream is kept.
 *
 * A publisher sends BENCH_RATE (500) messages a second of 2.3 KB for BENCH_SECONDS (12), each
 * with a status-sized message beside it, and measures each publish's ack (SendMail waits for
 * exactly this). A worker process meanwhile does the rest of a relay's broker traffic per message:
 * - `no-reader`: the same load on other streams, nothing reads the published stream;
 * - `reader-purge-5s`: consumes the stream, republishes each message to a work queue and acks it;
 *   a purge below the ack floor every 5 s (the intake's rhythm under load);
 * - `reader-purge-200ms`: the same with a purge every 200 ms (the intake's rhythm at moderate rates);
 * - `reader-workqueue`: the stream is a work queue (each ack removes the message).
 * Each scenario runs BENCH_ROUNDS (2) times, interleaved; prints the ack latency and the NATS
 * server's CPU per message (from /proc, when it runs on this machine).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { percentile } from './load.js';
import { cpuMs, pidListening } from './proc-cpu.js';

const env = process.env;
const natsUrl = env.NATS_URL || 'nats://127.0.0.1:4222';
const RATE = Number(env.BENCH_RATE ?? 500);
const SECONDS = Number(env.BENCH_SECONDS ?? 12);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 2);
const SCENARIOS = ['no-reader', 'reader-purge-5s', 'reader-purge-200ms', 'reader-workqueue'] as const;
type Scenario = (typeof SCENARIOS)[number];
const body = new Uint8Array(2300).fill(65);
const status = body.subarray(0, 200);
const connectBench = () => connect({ servers: natsUrl, noAsyncTraces: true, name: 'bench-broker' });

/** Publishes at RATE to `<s>.in.x`, with a status-sized core publish beside each; prints ack latencies. */
async function publisher(s: string) {
  const nc = await connectBench();
  const js = jetstream(nc);
  const latencies: number[] = [];
  const acks: Promise<unknown>[] = [];
  const total = RATE * SECONDS;
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / RATE - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const start = performance.now();
    nc.publish(`${s}.st.q.${i}`, status);
    acks.push(js.publish(`${s}.in.x`, body, { msgID: `${s}-${i}` }).then(() => void latencies.push(performance.now() - start)));
  }
  await Promise.all(acks);
  latencies.sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({ p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) })}\n`);
  await nc.close();
}

/** The rest of the traffic, until stdin closes. */
async function worker(s: string, scenario: Scenario) {
  const nc = await connectBench();
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const stops: Array<() => void> = [];
  const consume = async (stream: string, durable: string, handle: (m: { data: Uint8Array; seq: number; ack(): void }) => void) => {
    await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, max_ack_pending: 1000 });
    const msgs = await (await js.consumers.get(stream, durable)).consume({ max_messages: 256, expires: 1000 });
    stops.push(() => msgs.stop());
    void (async () => {
      for await (const m of msgs) handle(m);
    })();
  };
  if (scenario === 'no-reader') {
    // The republish the reader would do, at the same rate, to the work queue.
    let i = 0;
    const timer = setInterval(() => {
      for (let k = 0; k < RATE / 100; k++) void js.publish(`${s}.d.x`, body, { msgID: `o-${i++}` }).catch(() => {});
    }, 10);
    stops.push(() => clearInterval(timer));
  } else {
    await consume(
      `${s}_IN`,
      'intake',
      (m) =>
        void js.publish(`${s}.d.x`, m.data, { msgID: `d-${m.seq}` }).then(
          () => m.ack(),
          () => {},
        ),
    );
    if (scenario !== 'reader-workqueue') {
      let below = 0;
      const timer = setInterval(
        () =>
          void (async () => {
            const floor = (await jsm.consumers.info(`${s}_IN`, 'intake')).ack_floor.stream_seq;
            if (floor > below) await jsm.streams.purge(`${s}_IN`, { seq: floor + 1 });
            below = floor;
          })().catch(() => {}),
        scenario === 'reader-purge-5s' ? 5_000 : 200,
      );
      stops.push(() => clearInterval(timer));
    }
  }
  // The sender's part: two status events and an ack per message.
  await consume(`${s}_D`, 'send', (m) => {
    nc.publish(`${s}.st.s.${m.seq}`, status);
    void js.publish(`${s}.st.t.${m.seq}`, status).then(
      () => m.ack(),
      () => {},
    );
  });
  process.stdout.write('ready\n');
  await new Promise((r) => process.stdin.on('close', r).resume());
  for (const stop of stops) stop();
  await nc.close();
}

function child(args: string[]) {
  const p = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  return {
    proc: p,
    line: () =>
      new Promise<string>((resolve, reject) => {
        const check = () => (out.includes('\n') ? resolve(out.slice(0, out.indexOf('\n'))) : undefined);
        p.stdout!.on('data', check);
        p.on('exit', (code) => reject(new Error(`bench-broker ${args[0]} exited (${code}) before answering`)));
        check();
      }),
    exited: new Promise((r) => p.on('exit', r)),
  };
}

async function round(nc: NatsConnection, scenario: Scenario, n: number, natsPid: number | undefined) {
  const jsm = await jetstreamManager(nc);
  const s = `bench_broker_${Date.now().toString(36)}_${n}`;
  const file = { storage: StorageType.File };
  await jsm.streams.add({
    ...file,
    name: `${s}_IN`,
    subjects: [`${s}.in.>`],
    retention: scenario === 'reader-workqueue' ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
  });
  await jsm.streams.add({ ...file, name: `${s}_D`, subjects: [`${s}.d.>`], retention: RetentionPolicy.Workqueue });
  await jsm.streams.add({ ...file, name: `${s}_ST`, subjects: [`${s}.st.>`], retention: RetentionPolicy.Limits });
  try {
    const w = child(['worker', s, scenario]);
    await w.line();
    const cpu0 = cpuMs(natsPid);
    const p = child(['publisher', s]);
    const r = JSON.parse(await p.line()) as { p50: number; p99: number; max: number };
    const cpu1 = cpuMs(natsPid);
    w.proc.stdin!.end();
    await w.exited;
    const cpu = cpu0 === undefined || cpu1 === undefined ? 'n/a' : ((cpu1 - cpu0) / (RATE * SECONDS)).toFixed(3);
    console.log(
      `scenario=${scenario} round=${n} publish_ack_p50_ms=${r.p50.toFixed(1)} publish_ack_p99_ms=${r.p99.toFixed(1)} publish_ack_max_ms=${r.max.toFixed(1)} nats_cpu_ms_per_message=${cpu}`,
    );
  } finally {
    for (const name of [`${s}_IN`, `${s}_D`, `${s}_ST`]) await jsm.streams.delete(name).catch(() => {});
  }
}

async function main() {
  const [role, s, scenario] = process.argv.slice(2);
  if (role === 'publisher') return publisher(s!);
  if (role === 'worker') return worker(s!, scenario as Scenario);
  const nc = await connectBench();
  const natsPid = pidListening(natsUrl);
  process.stderr.write(`broker: ${RATE} publishes/s for ${SECONDS} s per round, ${ROUNDS} rounds of ${SCENARIOS.join(', ')}\n`);
  try {
    for (let n = 1; n <= ROUNDS; n++) for (const sc of SCENARIOS) await round(nc, sc, n, natsPid);
  } finally {
    await nc.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench-broker: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
