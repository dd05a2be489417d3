import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';

const loggerModule = new URL('../dist/logger.js', import.meta.url).href;

/**
 * A service whose supervisor is gone: it logs, is told to go on once nobody reads its stdout any
 * more, logs twice (one write in flight, one buffered) and exits.
 */
const SERVICE = `
import { createLogger } from '${loggerModule}';
const log = createLogger({ service: 'orphan' });
log.info('ready');
process.stdin.once('data', () => {
  log.info('first line after the reader left');
  log.info('second line after the reader left');
  process.exit(0);
});
`;

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

describe('logDestination', () => {
  it('lets a process whose stdout reader is gone exit, with log lines still buffered', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-log-dest-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'service.mjs'), SERVICE);
    const child = spawn(process.execPath, [join(dir, 'service.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] });
    cleanup.push(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;

    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const first = await lines.next();
    expect(JSON.parse(first.value as string)).toMatchObject({ msg: 'ready', service: 'orphan' });
    // The reader leaves: every later write to the child's stdout fails with EPIPE.
    child.stdout!.destroy();
    await new Promise((r) => setTimeout(r, 100));
    child.stdin!.write('go\n');

    const outcome = await Promise.race([
      exited.then(([code, signal]) => ({ code, signal })),
      new Promise<'still running'>((r) => setTimeout(() => r('still running'), 15_000)),
    ]);
    expect(outcome).toEqual({ code: 0, signal: null });
  });
});
