import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createSupervisor, isChildError, type ChildError, type Supervisor } from './children.js';

// A stand-in for a service: pino-like lines, a ready line, and a behaviour picked by FAKE_MODE.
const FAKE_CHILD = `
const mode = process.env.FAKE_MODE;
const log = (level, msg, extra = {}) => console.log(JSON.stringify({ level, time: Date.now(), service: 'relay-fake', msg, ...extra }));
// Before the ready line: the supervisor may stop a child as soon as it is ready.
process.on('SIGTERM', () => {
  if (mode === 'stubborn') return log(40, 'ignoring SIGTERM');
  log(30, 'stopping');
  process.exit(0);
});
if (mode === 'bad-config') {
  console.error('relay-fake: relay.yaml: senders[0].smtp.port: required');
  process.exit(1);
}
log(30, 'starting');
log(20, 'debug detail');
if (mode === 'crash') {
  log(50, 'cannot connect to NATS', { err: { message: 'ECONNREFUSED 127.0.0.1:4222' } });
  process.exit(3);
}
if (mode === 'slow') log(40, 'waiting for the broker');
if (mode !== 'slow') log(30, 'ready', { ports: { grpc: Number(process.env.FAKE_PORT ?? 1234), metrics: 4321 } });
if (mode === 'die-later') setTimeout(() => { console.error('Error: boom'); process.exit(2); }, 100);
setInterval(() => {}, 1000);
`;

const dir = mkdtempSync(join(tmpdir(), 'relay-children-'));
const script = join(dir, 'fake.mjs');
writeFileSync(script, FAKE_CHILD);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec = (name: string, mode: string, env: Record<string, string> = {}) => ({
  name,
  command: process.execPath,
  args: [script],
  env: { ...process.env, FAKE_MODE: mode, ...env },
});

let sup: Supervisor | undefined;
afterEach(async () => {
  sup?.kill();
  await sup?.stop();
  sup = undefined;
});

describe('createSupervisor', () => {
  it('resolves with the ports of the ready line and shows only warn+ and ready lines', async () => {
    const printed: string[] = [];
    sup = createSupervisor({ print: (l) => printed.push(l) });
    const ready = await sup.start(spec('ingest', 'ready', { FAKE_PORT: '50051' }));
    expect(ready.ports).toEqual({ grpc: 50051, metrics: 4321 });
    expect(ready.pid).toBeGreaterThan(0);
    expect(printed).toEqual(['[ingest] ready (grpc 50051, metrics 4321)']);
    await sup.stop();
  });

  it('shows every line with verbose', async () => {
    const printed: string[] = [];
    sup = createSupervisor({ print: (l) => printed.push(l), verbose: true });
    await sup.start(spec('scheduler', 'ready'));
    expect(printed).toEqual(['[scheduler] starting', '[scheduler] DEBUG: debug detail', '[scheduler] ready (grpc 1234, metrics 4321)']);
  });

  it('rejects with the last lines when a child exits before it is ready', async () => {
    sup = createSupervisor({ print: () => {} });
    const err = (await sup.start(spec('credentials', 'crash')).catch((e: unknown) => e)) as ChildError;
    expect(isChildError(err)).toBe(true);
    expect(err.message).toBe('credentials exited with code 3 before it was ready');
    expect(err.lastLines).toContain('[credentials] ERROR: cannot connect to NATS: ECONNREFUSED 127.0.0.1:4222');
  });

  it('keeps apart the last lines that were not printed, so a report does not repeat the screen', async () => {
    const printed: string[] = [];
    sup = createSupervisor({ print: (l) => printed.push(l) });
    const crash = (await sup.start(spec('credentials', 'crash')).catch((e: unknown) => e)) as ChildError;
    expect(printed).toEqual(['[credentials] ERROR: cannot connect to NATS: ECONNREFUSED 127.0.0.1:4222']);
    expect(crash.unshownLines).toEqual(['[credentials] starting', '[credentials] DEBUG: debug detail']);

    const config = (await sup.start(spec('ingest', 'bad-config')).catch((e: unknown) => e)) as ChildError;
    expect(printed.at(-1)).toBe('[ingest] relay-fake: relay.yaml: senders[0].smtp.port: required');
    expect(config.lastLines).toEqual(['[ingest] relay-fake: relay.yaml: senders[0].smtp.port: required']);
    expect(config.unshownLines).toEqual([]);
  });

  it('gives up on a child that never logs ready, and stops it', async () => {
    // Long enough for Node to start and log on a loaded machine: the last lines must be there.
    sup = createSupervisor({ print: () => {}, readyTimeoutMs: 3_000 });
    const err = (await sup.start(spec('smtp-sender', 'slow')).catch((e: unknown) => e)) as ChildError;
    expect(err.message).toBe('smtp-sender: not ready after 3 s');
    expect(err.lastLines).toContain('[smtp-sender] WARN: waiting for the broker');
  });

  it('reports a ready child that dies, with its last lines', async () => {
    const died = new Promise<ChildError>((resolve) => {
      sup = createSupervisor({ print: () => {}, onUnexpectedExit: resolve });
    });
    await sup!.start(spec('graph-sender', 'die-later'));
    const err = await died;
    expect(err.message).toBe('graph-sender exited with code 2');
    expect(err.lastLines.at(-1)).toBe('[graph-sender] Error: boom');
  });

  it('stops children in the order asked, without reporting them as dead', async () => {
    const dead: string[] = [];
    const printed: string[] = [];
    sup = createSupervisor({ print: (l) => printed.push(l), verbose: true, onUnexpectedExit: (e) => dead.push(e.child) });
    await sup.start(spec('credentials', 'ready'));
    await Promise.all([sup.start(spec('ingest', 'ready')), sup.start(spec('scheduler', 'ready'))]);
    await sup.stop(['ingest', 'scheduler']);
    const stopped = printed.filter((l) => l.endsWith('stopping'));
    expect(stopped.sort()).toEqual(['[ingest] stopping', '[scheduler] stopping']);
    await sup.stop();
    expect(printed.at(-1)).toBe('[credentials] stopping');
    expect(dead).toEqual([]);
    await sup.stop(); // twice is fine
  });

  it('kills a child that ignores SIGTERM after the grace period', async () => {
    sup = createSupervisor({ print: () => {}, graceMs: 200 });
    await sup.start(spec('ingest', 'stubborn'));
    const t = Date.now();
    await sup.stop();
    expect(Date.now() - t).toBeGreaterThanOrEqual(150);
    expect(sup.lastLines('ingest')).toContain('[ingest] WARN: ignoring SIGTERM');
  });

  it('refuses to start after stop() and reports a command that cannot run', async () => {
    sup = createSupervisor({ print: () => {} });
    const bad = await sup.start({ name: 'x', command: join(dir, 'no-such-binary'), args: [], env: {} }).catch((e: unknown) => e);
    expect((bad as Error).message).toContain('x: cannot start');
    await sup.stop();
    await expect(sup.start(spec('ingest', 'ready'))).rejects.toThrow('the stack is stopping');
  });
});
