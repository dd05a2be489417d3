import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SendMailRequestSchema } from '@relay/proto';

export type SendInit = MessageInitShape<typeof SendMailRequestSchema>;

/** What the load loops need of a client: `@relay/client`'s RelayClient or the bare one. */
export interface Caller {
  sendMail(req: SendInit, opts: { deadlineMs: number }): Promise<unknown>;
}

export interface LatencyStats {
  count: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Percentile of sorted values (nearest rank). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function stats(latencies: number[], errors: number): LatencyStats {
  const s = [...latencies].sort((a, b) => a - b);
  return { count: s.length, errors, p50Ms: percentile(s, 50), p99Ms: percentile(s, 99), maxMs: s.at(-1) ?? NaN };
}

/** A message body of about `size` bytes, in 76-character lines as mail bodies are. */
export function bodyOfSize(size: number): string {
  const line = `${'x'.repeat(74)}\r\n`;
  return line.repeat(Math.ceil(size / line.length)).slice(0, size);
}

/** Closed loop: `concurrency` callers send `n` messages back to back. Returns per-call latencies. */
export async function closedLoop(client: Caller, n: number, concurrency: number, make: (i: number) => SendInit) {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const s = performance.now();
        try {
          await client.sendMail(make(i), { deadlineMs: 30_000 });
          latencies.push(performance.now() - s);
        } catch {
          errors++;
        }
      }
    }),
  );
  return { seconds: (performance.now() - t0) / 1000, ...stats(latencies, errors) };
}

/**
 * Open loop: calls start at a fixed rate whatever the answers do, as independent callers would,
 * so a slow answer shows in the latency instead of lowering the rate.
 */
export async function openLoop(client: Caller, ratePerS: number, seconds: number, make: (i: number) => SendInit) {
  const total = Math.round(ratePerS * seconds);
  const latencies: number[] = [];
  const calls: Promise<void>[] = [];
  const trace: string[] = [];
  let errors = 0;
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / ratePerS;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const s = performance.now();
    calls.push(
      client.sendMail(make(i), { deadlineMs: 30_000 }).then(
        () => {
          latencies.push(performance.now() - s);
          if (process.env.BENCH_LATENCY_LOG) trace.push(`${(performance.timeOrigin + s).toFixed(1)} ${(performance.now() - s).toFixed(1)}`);
        },
        () => void errors++,
      ),
    );
  }
  await Promise.all(calls);
  if (process.env.BENCH_LATENCY_LOG) (await import('node:fs')).appendFileSync(process.env.BENCH_LATENCY_LOG, `# ${ratePerS}/s\n${trace.join('\n')}\n`);
  return { achievedPerS: total / ((performance.now() - t0) / 1000), ...stats(latencies, errors) };
}
