import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { masterKey, repoRoot, runServiceToExit, testNatsUrl, testRedisUrl, writeConfig } from '@relay/testkit';
import { describe, expect, it } from 'vitest';

function config(smtp: Record<string, unknown>) {
  return {
    clients: [{ name: 'billing-app', api_key: 'literal-test-key-0123456789abcdef0123456789', senders: ['no-reply'] }],
    senders: [{ id: 'no-reply', from: 'no-reply@campus.example', transport: 'smtp', smtp }],
  };
}

const M365 = { host: 'smtp.office365.com', port: 587, security: 'starttls', auth: { type: 'password', user: 'no-reply@campus.example', password: 'x' } };

function run(service: string, cfg: unknown) {
  return runServiceToExit(service, {
    RELAY_CONFIG: writeConfig(cfg),
    NATS_URL: testNatsUrl(),
    RELAY_MASTER_KEY: masterKey(),
    RELAY_ENVELOPE_KEY: masterKey(),
    RELAY_HOST: '127.0.0.1',
    RELAY_GRPC_PORT: '0',
    RELAY_METRICS_PORT: '0',
    RELAY_CREDENTIALS_PORT: '0',
    RELAY_HTTP_PORT: '0',
  });
}

describe('an invalid configuration stops a service at start, naming the key', () => {
  it('an unknown key', async () => {
    const r = await run('ingest', config({ ...M365, hostname: 'smtp.office365.com' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('senders[0].smtp.hostname: unknown key');
    // One line for the operator, no stack trace.
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('port 25 toward Microsoft 365, with the reason', async () => {
    const r = await run('ingest', config({ ...M365, port: 25 }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('senders[0].smtp.port');
    expect(r.stderr).toMatch(/port 25 toward smtp\.office365\.com is refused/);
    expect(r.stderr).toMatch(/587/);
  });

  it('a missing required key', async () => {
    const cfg = config(M365);
    delete (cfg.senders[0] as Record<string, unknown>).from;
    const r = await run('ingest', cfg);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('senders[0].from: required');
  });

  it.each(['credentials', 'scheduler', 'smtp-sender', 'graph-sender'])('%s refuses it too', async (service) => {
    const r = await run(service, config({ ...M365, port: 25 }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('senders[0].smtp.port: port 25 toward smtp.office365.com is refused');
  });
});

describe('npm run stack with an invalid configuration', () => {
  it('prints the error once and stops', async () => {
    const cfg = config({ ...M365, port: '587' });
    const r = await promisify(execFile)(process.execPath, [join(repoRoot, 'tools', 'dist', 'stack', 'stack.js')], {
      cwd: repoRoot,
      timeout: 60_000,
      env: {
        ...process.env,
        RELAY_CONFIG: writeConfig(cfg),
        NATS_URL: testNatsUrl(),
        REDIS_URL: testRedisUrl(),
        RELAY_MASTER_KEY: masterKey(),
        RELAY_GRPC_PORT: '0',
        RELAY_HTTP_PORT: '0',
        RELAY_CREDENTIALS_PORT: '0',
        RELAY_METRICS_PORT: '0',
      },
    }).then(
      () => ({ code: 0, out: '' }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, out: err.stdout + err.stderr }),
    );
    expect(r.code).toBe(1);
    const message = 'senders[0].smtp.port: expected a number, got the string "587"';
    expect(r.out.split(message)).toHaveLength(2);
    // Whoever finds the error first (the stack itself or a service), the stack stops as failed.
    expect(r.out).toContain('stack: stopped after a failure');
  });
});
