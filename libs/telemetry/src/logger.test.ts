import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import { startOpsServer } from './ops-server.js';

describe('createLogger', () => {
  it('writes JSON with the service name and redacts secrets', async () => {
    const out = new PassThrough();
    const lines: string[] = [];
    out.on('data', (b: Buffer) => lines.push(...b.toString().trim().split('\n')));
    const log = createLogger({ service: 'relay-test', destination: out });
    log.info({ password: 'hunter2', auth: { accessToken: 'tok-123', user: 'u' }, sender: 's' }, 'hello');
    await new Promise((r) => setImmediate(r));
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ service: 'relay-test', msg: 'hello', sender: 's', password: '[redacted]', auth: { accessToken: '[redacted]', user: 'u' } });
    expect(lines.join()).not.toMatch(/hunter2|tok-123/);
  });
});

describe('startOpsServer', () => {
  it('answers health, readiness and metrics', async () => {
    let ready = false;
    const ops = await startOpsServer({ port: 0, host: '127.0.0.1', ready: () => ready, metrics: () => 'relay_up 1\n' });
    try {
      const base = `http://127.0.0.1:${ops.port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      ready = true;
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect(await (await fetch(`${base}/metrics`)).text()).toBe('relay_up 1\n');
      expect((await fetch(`${base}/nope`)).status).toBe(404);
    } finally {
      await ops.close();
    }
  });
});
