import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { runService, type RunLogger } from './run-service.js';

/** A process with the given node arguments and NODE_OPTIONS, and a logger that keeps its warnings. */
async function startWith(execArgv: string[], nodeOptions?: string) {
  const proc = Object.assign(new EventEmitter(), {
    execArgv,
    env: { NODE_OPTIONS: nodeOptions },
    stderr: { write: () => true },
    exitCode: undefined as number | undefined,
  });
  const warnings: Array<{ obj: unknown; msg: string }> = [];
  const logger = { warn: (obj: unknown, msg: string) => warnings.push({ obj, msg }), info: () => {}, error: () => {}, fatal: () => {} } as unknown as RunLogger;
  const service = { start: async () => ({ grpc: 1 }), stop: async () => {} };
  await runService(proc as unknown as NodeJS.Process, 'probe', async () => ({ service, logger }));
  return warnings;
}

/** A process whose exit() calls are recorded. */
function signalledProcess() {
  const exits: number[] = [];
  const proc = Object.assign(new EventEmitter(), {
    execArgv: ['--max-semi-space-size=16'],
    env: {},
    stderr: { write: () => true },
    exitCode: undefined as number | undefined,
    exit: (code: number) => void exits.push(code),
  });
  return { proc, exits };
}

/** A logger that says nothing. */
const logger = { warn: () => {}, info: () => {}, error: () => {}, fatal: () => {} } as unknown as RunLogger;

describe('runService', () => {
  it("warns, naming them, when the process was started without the services' node flags", async () => {
    const warnings = await startWith(['--import', 'register.js']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.obj).toEqual({ missing: ['--max-semi-space-size=16'] });
    expect(warnings[0]!.msg).toMatch(/started without --max-semi-space-size=16/);
  });

  it('says nothing when the arguments or NODE_OPTIONS have them', async () => {
    expect(await startWith(['--max-semi-space-size=16', '--import', 'register.js'])).toEqual([]);
    expect(await startWith([], '--max-semi-space-size=16')).toEqual([]);
  });

  it('ends the process with code 1 once a stop outlasts the grace period and the force time', async () => {
    const { proc, exits } = signalledProcess();
    // A stop that never ends, as one waiting on a provider or a broker that never answers.
    const service = { start: async () => ({}), stop: () => new Promise<void>(() => {}) };
    await runService(proc as unknown as NodeJS.Process, 'probe', async () => ({ service, logger, graceMs: 20, forceMs: 20 }));
    proc.emit('SIGTERM');
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => exits.length > 0 && (clearInterval(poll), resolve()), 10);
    });
    expect(exits).toEqual([1]);
  });

  it('on a clean stop sets exit code 0, flushes telemetry once, and leaves ending the process to node', async () => {
    const { proc, exits } = signalledProcess();
    let flushes = 0;
    let stopped!: () => void;
    const done = new Promise<void>((r) => (stopped = r));
    const service = { start: async () => ({}), stop: async () => stopped() };
    await runService(proc as unknown as NodeJS.Process, 'probe', async () => ({ service, logger, graceMs: 20, forceMs: 20 }), {
      flush: async () => (flushes++, true),
    });
    proc.emit('SIGTERM');
    await done;
    await new Promise((r) => setTimeout(r, 0));
    expect(proc.exitCode).toBe(0);
    expect(flushes).toBe(1);
    expect(exits).toEqual([]);
  });
});
