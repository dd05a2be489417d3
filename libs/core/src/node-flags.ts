/**
 * Node/V8 flags every service is started with: by `npm run stack`, the benchmarks, the tests,
 * `npm start` in a service and the container image (README, Operations). A service started
 * without them runs, and logs a warning naming them.
 *
 * `--max-semi-space-size=16` (MB): V8 sizes the young generation from the machine's memory, up to
 * 64 MB semi-spaces (a 134 MB new space) on a 24 GB machine. V8 starts marking the old generation
 * as soon as its room to the next limit is smaller than the new space, because one scavenge could
 * promote that much. After the first mark-compact under load, ingest's and the scheduler's old
 * generations (about 26 MB live, the next limit about 98 MB) were always in that state: every
 * time the young generation filled up, V8 ran a mark-compact instead of a scavenge, every 0.6–1.1 s
 * at 500 messages/s, and each made calls wait (SendMail p99 at 500 calls/s 20–73 ms in those
 * windows against 5–14 ms in the others). Capped at 16 MB semi-spaces (new space at most 34 MB),
 * collections stay scavenges of a few milliseconds (README, Benchmark, seventh session).
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16'];

/**
 * The service flags a process was not started with, judged by their names in its own arguments
 * and NODE_OPTIONS (where `--max-semi-space-size` is allowed too); another value counts as set.
 */
export function missingNodeFlags(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].map((a) => a.split('=')[0]!.replaceAll('_', '-'));
  return SERVICE_NODE_FLAGS.filter((f) => !given.includes(f.split('=')[0]!));
}
