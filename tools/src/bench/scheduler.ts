/**
 * npm run bench:scheduler — the scheduler alone (one replica), against the real NATS and Redis:
 *  0. warm-up: one message per sender (the first look at a sender builds its pacing state);
 *  1. releases/s: BENCH_MESSAGES (50000) messages spread over BENCH_SENDERS (1000) paced senders
 *     (each `batch_size: 1000, interval: 1s`, so every release goes through the Redis pacer and
 *     the pacing log) are put on the submitted subjects; the rate at which dispatches appear;
 *  2. added latency for an unpaced sender: BENCH_RATE (200/s) messages for BENCH_SECONDS (5);
 *     time from JetStream's ack of the submission to the dispatch being seen, p50/p99.
 * BENCH_DEBUG=1 prints the streams' state after the releases; BENCH_NODE_ARGS adds arguments to
 * the scheduler's node (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { busNames } from '@relay/bus';
import { EnvelopeSchema } from '@relay/proto';
import { percentile } from './load.js';
import { cpuMs, pidListening } from './proc-cpu.js';
import { createSupervisor } from '../stack/children.js';
import { serviceArgs } from '../stack/services.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const env = process.env;
const num = (name: string, fallback: number) => (env[name] ? Number(env[name]) : fallback);
const N = num('BENCH_MESSAGES', 50_000);
const SENDERS = num('BENCH_SENDERS', 1000);
const RATE = num('BENCH_RATE', 200);
const SECONDS = num('BENCH_SECONDS', 5);
const natsUrl = env.NATS_URL || 'nats://127.0.0.1:4222';

async function main() {
  const prefix = `benchs-${Date.now().toString(36)}`;
  const names = busNames(prefix);
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-sched-'));
  const configPath = join(dir, 'relay.yaml');
  const ids = Array.from({ length: SENDERS }, (_, i) => `s${i}`);
  const sender = (id: string, rate: string) =>
    `  - { id: ${id}, from: ${id}@relay.localhost, transport: smtp, smtp: { host: 127.0.0.1, port: 2587, security: none }${rate} }\n`;
  writeFileSync(
    configPath,
    `clients:\n  - { name: bench, api_key: ${randomBytes(24).toString('hex')}, senders: [] }\nsenders:\n` +
      ids.map((id) => sender(id, ', rate: { batch_size: 1000, interval: 1s }')).join('') +
      sender('direct', ''),
  );
  const sup = createSupervisor({ print: (l) => process.stderr.write(`${l}\n`), graceMs: 15_000, readyTimeoutMs: 120_000 });
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
  const js = jetstream(nc);
  try {
    process.stderr.write(`starting a scheduler with ${SENDERS + 1} senders\n`);
    const t0 = Date.now();
    const scheduler = await sup.start({
      name: 'scheduler',
      command: process.execPath,
      // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the scheduler.
      args: serviceArgs(root, 'scheduler', env.BENCH_NODE_ARGS?.split(' ').filter(Boolean)),
      env: {
        ...env,
        NATS_URL: natsUrl,
        RELAY_CONFIG: configPath,
        RELAY_BUS_PREFIX: prefix,
        RELAY_METRICS_PORT: '0',
        RELAY_HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
      },
    });
    const startupS = (Date.now() - t0) / 1000;

    const seen = new Map<string, number>();
    let count = 0;
    let onCount: (() => void) | undefined;
    let target = 0;
    const sub = nc.subscribe(`${prefix}.dispatch.>`);
    void (async () => {
      for await (const m of sub) {
        const id = fromBinary(EnvelopeSchema, m.data).messageId;
        if (seen.has(id)) continue;
        seen.set(id, performance.now());
        if (++count >= target) onCount?.();
      }
    })();
    const reach = (n: number) => new Promise<void>((r) => (count >= n ? r() : ((target = n), (onCount = r))));
    const envelope = (id: string, s: string) =>
      toBinary(
        EnvelopeSchema,
        create(EnvelopeSchema, {
          messageId: id,
          sender: s,
          to: ['a@sink.localhost'],
          subject: id,
          text: 'x'.repeat(512),
          attempt: 1,
          recipientCount: 1,
          submittedAt: timestampFromDate(new Date()),
        }),
      );

    // Warm-up: one message per sender, so each pacing key's state exists in Redis (the first look
    // at a sender rebuilds it from the pacing log, once per Redis lifetime) before the clock runs.
    process.stderr.write(`warm-up: one message for each of ${SENDERS} senders\n`);
    const w0 = performance.now();
    await Promise.all(ids.map((s) => js.publish(names.submittedSubject(s), envelope(`w-${s}`, s), { msgID: `w-${s}.submit` })));
    await reach(SENDERS);
    const warmupS = (performance.now() - w0) / 1000;

    process.stderr.write(`releases: ${N} messages over ${SENDERS} paced senders\n`);
    const natsPid = pidListening(natsUrl);
    const cpu0 = [cpuMs(scheduler.pid), cpuMs(natsPid)];
    const r0 = performance.now();
    const acks: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) {
      const s = ids[i % SENDERS]!;
      acks.push(js.publish(names.submittedSubject(s), envelope(`r${i}`, s), { msgID: `r${i}.submit` }));
      if (acks.length >= 1000) await Promise.all(acks.splice(0));
    }
    await Promise.all(acks);
    await reach(SENDERS + N);
    const releasesPerS = N / ((performance.now() - r0) / 1000);
    // The CPU count runs on until the intake has purged what it acked, so that work is in it too.
    const jsmc = await jetstreamManager(nc);
    const purgeDeadline = Date.now() + 30_000;
    while ((await jsmc.streams.info(names.submittedStream)).state.first_seq < SENDERS + N - 64 && Date.now() < purgeDeadline)
      await new Promise((r) => setTimeout(r, 100));
    // CPU per release is steadier than the rate on a shared machine.
    if (env.BENCH_DEBUG) {
      const jsm0 = await jetstreamManager(nc);
      for (const st of [names.submittedStream, names.heldStream, names.dispatchStream, names.pacingStream]) {
        const i = await jsm0.streams.info(st);
        process.stderr.write(
          `${st}: retention=${i.config.retention} messages=${i.state.messages} first=${i.state.first_seq} last=${i.state.last_seq} consumers=${i.state.consumer_count}\n`,
        );
      }
    }
    const cpuPerRelease = [cpuMs(scheduler.pid), cpuMs(natsPid)].map((b, i) =>
      b === undefined || cpu0[i] === undefined ? 'n/a' : ((b - cpu0[i]!) / N).toFixed(3),
    );

    process.stderr.write(`latency: unpaced sender, ${RATE}/s for ${SECONDS} s\n`);
    const total = RATE * SECONDS;
    const acked = new Map<string, number>();
    const l0 = performance.now();
    const pubs: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++) {
      const wait = l0 + (i * 1000) / RATE - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const id = `l${i}`;
      pubs.push(
        js.publish(names.submittedSubject('direct'), envelope(id, 'direct'), { msgID: `${id}.submit` }).then(() => void acked.set(id, performance.now())),
      );
    }
    await Promise.all(pubs);
    await reach(SENDERS + N + total);
    const added = [...acked].map(([id, t]) => Math.max(0, seen.get(id)! - t)).sort((a, b) => a - b);

    console.log(
      [
        `senders=${SENDERS} messages=${N} scheduler_replicas=1 startup_s=${startupS.toFixed(1)} warmup_s=${warmupS.toFixed(1)}`,
        `releases_per_s=${releasesPerS.toFixed(0)}`,
        `cpu_ms_per_release scheduler=${cpuPerRelease[0]} nats=${cpuPerRelease[1]}`,
        `unpaced_added_latency_p50_ms=${percentile(added, 50).toFixed(2)} unpaced_added_latency_p99_ms=${percentile(added, 99).toFixed(2)} (at ${RATE}/s)`,
      ].join('\n'),
    );
    sub.unsubscribe();
  } finally {
    await sup.stop();
    const jsm = await jetstreamManager(nc);
    for await (const s of jsm.streams.list()) {
      if (s.config.name.includes(prefix) || s.config.name.includes(prefix.toUpperCase().replace(/-/g, '_')))
        await jsm.streams.delete(s.config.name).catch(() => {});
    }
    await nc.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:scheduler: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
