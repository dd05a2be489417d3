import { PassThrough } from 'node:stream';
import { context, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withMessage } from './log-context.js';
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

describe('createLogger in a trace', () => {
  // What the SDK registers in a service: without a context manager there is no active context.
  beforeAll(() => void context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
  afterAll(() => context.disable());

  it("writes the active span's trace_id and span_id, and the message's id and sender", async () => {
    const out = new PassThrough();
    const lines: string[] = [];
    out.on('data', (b: Buffer) => lines.push(...b.toString().trim().split('\n')));
    const log = createLogger({ service: 'relay-test', destination: out });
    const span = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED };
    const ctx = withMessage({ message_id: 'm-1', sender: 'no-reply' }, trace.setSpanContext(context.active(), span));
    await context.with(ctx, async () => {
      await new Promise((r) => setImmediate(r));
      log.info('inside');
    });
    log.info('outside');
    await new Promise((r) => setImmediate(r));
    const [inside, outside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(inside).toMatchObject({ msg: 'inside', trace_id: span.traceId, span_id: span.spanId, message_id: 'm-1', sender: 'no-reply' });
    expect(outside).toMatchObject({ msg: 'outside' });
    expect(outside).not.toHaveProperty('trace_id');
    expect(outside).not.toHaveProperty('message_id');
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
