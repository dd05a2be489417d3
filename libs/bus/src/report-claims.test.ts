import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectBus, type Bus } from './bus.js';
import { MAX_REPORT_CURSOR_BYTES, reportClaims, type ReportClaim } from './report-claims.js';
import { startReportReaders } from './report-readers.js';

const isClaim = (c: ReportClaim | { busyUntil: number }): c is ReportClaim => !('busyUntil' in c);

describe('report claims against a real NATS JetStream', () => {
  const prefix = uniquePrefix('claims');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'report-claims-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  it('gives a due folder to exactly one of the replicas that ask at once', async () => {
    const replicas = Array.from({ length: 5 }, (_, i) => reportClaims(bus, `r${i}`));
    const taken = await Promise.all(replicas.map((r) => r.take('sender-a\0imap.example\0INBOX', 60_000)));
    expect(taken.filter(isClaim)).toHaveLength(1);
    for (const t of taken.filter((t) => !isClaim(t))) expect((t as { busyUntil: number }).busyUntil).toBeGreaterThan(Date.now());
  });

  it('hands the cursor a pass saved to the next pass, of whichever replica takes it', async () => {
    const [a, b] = [reportClaims(bus, 'a'), reportClaims(bus, 'b')];
    const key = 'sender-b\0imap.example\0Bounces';
    const first = await a.take(key, 1);
    if (!isClaim(first)) throw new Error('the first take of a new folder is a claim');
    expect(first.cursor).toBeUndefined();
    await first.save({ uidValidity: '7', lastUid: 42 });
    await new Promise((r) => setTimeout(r, 5));
    const next = await b.take(key, 60_000);
    if (!isClaim(next)) throw new Error('a folder whose interval is over is due');
    expect(next.cursor).toEqual({ uidValidity: '7', lastUid: 42 });
    // Within the interval nobody else takes it, the replica that has it included.
    expect(isClaim(await a.take(key, 60_000))).toBe(false);
    expect(isClaim(await b.take(key, 60_000))).toBe(false);
  });

  it('refuses to keep a cursor over its bound', async () => {
    const claim = await reportClaims(bus).take('sender-c\0imap.example\0INBOX', 1);
    if (!isClaim(claim)) throw new Error('expected a claim');
    await expect(claim.save({ seen: 'x'.repeat(MAX_REPORT_CURSOR_BYTES) })).rejects.toThrow(/over 4096/);
  });

  it('runs one pass per interval over two report readers sharing the claims, and keeps the cursor across them', async () => {
    const passes: Array<{ replica: string; from: unknown }> = [];
    const sender = { id: 'sender-d', feedback: { intervalMs: 200 } };
    const started = Date.now();
    const readers = ['a', 'b'].map((replica) =>
      startReportReaders(
        () => [sender],
        () => ({
          key: 'sender-d\0imap.example\0INBOX',
          where: {},
          async read(pass: { cursor: number | undefined }) {
            passes.push({ replica, from: pass.cursor });
            pass.cursor = (pass.cursor ?? 0) + 1;
            return { read: 0 };
          },
        }),
        { info() {}, warn() {} },
        { claims: reportClaims(bus, replica), checkEveryMs: 10 },
      ),
    );
    while (passes.length < 4) await new Promise((r) => setTimeout(r, 20));
    await Promise.all(readers.map((r) => r.stop()));
    const elapsed = Date.now() - started;
    // Each pass starts where the one before it (of either replica) ended.
    expect(passes.map((p) => p.from)).toEqual([undefined, 1, 2, 3, 4, 5, 6, 7, 8].slice(0, passes.length));
    // No more passes than intervals began, whatever the timing of the two replicas.
    expect(passes.length).toBeLessThanOrEqual(Math.floor(elapsed / 200) + 1);
  });
});
