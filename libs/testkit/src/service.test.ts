import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SERVICE_NODE_FLAGS } from '@relay/core';
import { afterEach, describe, expect, it } from 'vitest';
import { runServiceToExit, spawnService, type ServiceProcess } from './service.js';

const script = fileURLToPath(new URL('../fixtures/fake-service.mjs', import.meta.url));

describe('spawnService', () => {
  const started: ServiceProcess[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.kill()));
  });

  it('resolves with the ports of the ready line and stops on SIGTERM', async () => {
    const svc = await spawnService('fake', { script, env: { FAKE_GIVEN: 'yes' } });
    started.push(svc);
    expect(svc.name).toBe('fake');
    expect(svc.pid).toBeGreaterThan(0);
    expect(svc.ports.metrics).toBe(40001);
    const res = await fetch(`http://127.0.0.1:${svc.ports.http}/`);
    expect(await res.text()).toBe('ok');
    expect(await svc.waitForLog(/"msg":"starting"/)).toContain('"given":"yes"');
    expect(await svc.stop()).toEqual({ code: 0, signal: null });
    expect(svc.logs.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
    expect(await svc.exited).toEqual({ code: 0, signal: null });
    expect(await svc.stop()).toEqual({ code: 0, signal: null });
  });

  it("starts the process with the services' node flags", async () => {
    const svc = await spawnService('fake', { script });
    started.push(svc);
    const argv = readFileSync(`/proc/${svc.pid}/cmdline`, 'utf8').split('\0');
    for (const flag of SERVICE_NODE_FLAGS) expect(argv.slice(0, argv.indexOf(script))).toContain(flag);
  });

  it("keeps the test runner's RELAY_ variables from the child but passes the given ones", async () => {
    process.env.RELAY_LEAK_TEST = 'secret';
    try {
      const svc = await spawnService('fake', { script, env: { RELAY_LEAK_GIVEN: '1' } });
      started.push(svc);
      expect(svc.logs[0]).toContain('"leaked":["RELAY_LEAK_GIVEN"]');
    } finally {
      delete process.env.RELAY_LEAK_TEST;
    }
  });

  it('rejects with the last log lines when the process exits before it is ready', async () => {
    const err = await spawnService('fake', { script, env: { FAKE_MODE: 'crash' } }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/fake exited with code 3 before it was ready/);
    expect((err as Error).message).toContain('port 25 is blocked');
  });

  it('gives up on a service that never becomes ready, and kills it', async () => {
    const err = await spawnService('fake', { script, env: { FAKE_MODE: 'silent' }, readyTimeoutMs: 3_000 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/fake was not ready within 3000 ms[\s\S]*"msg":"starting"/);
  });

  it('SIGKILLs a process that ignores SIGTERM after the timeout', async () => {
    const svc = await spawnService('fake', { script, env: { FAKE_MODE: 'stubborn' } });
    started.push(svc);
    const t0 = Date.now();
    expect(await svc.stop('SIGTERM', 300)).toEqual({ code: null, signal: 'SIGKILL' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(svc.logs.some((l) => l.includes('ignoring SIGTERM'))).toBe(true);
  });

  it('waitForLog rejects when the process exits without the line, and on timeout', async () => {
    const svc = await spawnService('fake', { script });
    started.push(svc);
    await expect(svc.waitForLog(/never/, 100)).rejects.toThrow(/did not log \/never\/ within 100 ms/);
    const waiting = svc.waitForLog(/never/, 5000);
    await svc.kill();
    await expect(waiting).rejects.toThrow(/fake was killed by SIGKILL without logging/);
  });

  it('refuses a service that was not built, saying so', async () => {
    await expect(spawnService('no-such-service')).rejects.toThrow(/services\/no-such-service\/dist\/main.js does not exist; build it first/);
  });
});

describe('runServiceToExit', () => {
  it('returns the exit code and output of a service that stops by itself', async () => {
    const r = await runServiceToExit('fake', { FAKE_MODE: 'crash' }, 10_000, { script });
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('"msg":"starting"');
    expect(r.stderr).toContain('port 25 is blocked');
  });

  it('kills a service that does not exit in time and reports its output', async () => {
    await expect(runServiceToExit('fake', { FAKE_MODE: 'silent' }, 3_000, { script })).rejects.toThrow(/did not exit within 3000 ms[\s\S]*starting/);
  });
});
