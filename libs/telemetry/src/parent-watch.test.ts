import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { EXIT_WITH_PARENT_ENV, PARENT_PID_ENV } from '@relay/core';
import { processesExited, procRunning } from '@relay/testkit';
import { afterEach, describe, it } from 'vitest';

/**
 * A supervisor (the middle process) starts a service-like process as `npm run stack` does, then
 * dies by SIGKILL. The service's stdin is no pipe here, so only its parent's process id tells it.
 */
const dist = (file: string) => new URL(`../dist/${file}`, import.meta.url).href;

const SUPERVISOR = `
import { spawn } from 'node:child_process';
const [script, ...nodeArgs] = process.argv.slice(2);
const c = spawn(process.execPath, [...nodeArgs, script], {
  env: { ...process.env, ${EXIT_WITH_PARENT_ENV}: '1', ${PARENT_PID_ENV}: String(process.pid) },
  stdio: 'ignore',
  detached: true,
});
console.log(c.pid);
setInterval(() => {}, 1000);
`;

/** Watches only once its parent is gone, as a service whose start took longer than its supervisor lived. */
const LATE_WATCHER = `
import { watchParent } from '${new URL('../../core/dist/parent-watch.js', import.meta.url).href}';
const t = setInterval(() => {
  if (process.ppid === Number(process.env.${PARENT_PID_ENV})) return;
  clearInterval(t);
  watchParent(process, () => process.exit(0));
  setInterval(() => {}, 1000);
}, 20);
`;

/** Never finishes starting: only what the telemetry module (loaded first) installed can end it. */
const STUCK_STARTING = `setInterval(() => {}, 1000);`;

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

async function orphanOf(script: string, nodeArgs: string[] = []): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'relay-parent-watch-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'supervisor.mjs'), SUPERVISOR);
  writeFileSync(join(dir, 'service.mjs'), script);
  const supervisor = spawn(process.execPath, [join(dir, 'supervisor.mjs'), join(dir, 'service.mjs'), ...nodeArgs], {
    env: { ...process.env, OTEL_SDK_DISABLED: 'true' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = await createInterface({ input: supervisor.stdout })
    [Symbol.asyncIterator]()
    .next()
    .then((r) => [r.value as string]);
  const pid = Number(line);
  cleanup.push(() => {
    if (procRunning(pid)) process.kill(pid, 'SIGKILL');
  });
  supervisor.kill('SIGKILL');
  await new Promise((resolve) => supervisor.once('close', resolve));
  return pid;
}

describe('watchParent', () => {
  it('sees a parent that died before it began watching', async () => {
    const pid = await orphanOf(LATE_WATCHER);
    await processesExited([pid], 5_000, 'its supervisor died');
  });

  it('ends a service still starting when its supervisor dies (telemetry module, loaded first)', async () => {
    const pid = await orphanOf(STUCK_STARTING, ['--import', dist('register.js')]);
    await processesExited([pid], 10_000, 'its supervisor died');
  });
});
