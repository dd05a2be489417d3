import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientEntry, managedSpec, newClient, repoRoot, smtpSender, type Stack, startSmtpServer, startStack, type TestSmtpServer } from '@relay/testkit';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The `relay` command, through its installed binary, against a running stack.

const BIN = join(repoRoot, 'cli', 'bin', 'relay.mjs');
const PASSWORD = 'cli-test-password-0123456789';
let open: TestSmtpServer;
let authed: TestSmtpServer;
let stack: Stack;
const ops = newClient('ops', [], true);
const app = newClient('app', ['desk']);
const dir = mkdtempSync(join(tmpdir(), 'relay-cli-'));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function relay(args: string[], opts: { key?: string; stdin?: string } = {}): Promise<Result> {
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: dir,
    XDG_CONFIG_HOME: dir,
    NO_COLOR: '1',
    RELAY_ADDRESS: stack.address,
    RELAY_API_KEY: opts.key ?? ops.apiKey,
  };
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
    child.stdin?.end(opts.stdin ?? '');
  });
}

const json = <T>(r: Result): T => {
  expect(r.stderr, r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as T;
};

beforeAll(async () => {
  [open, authed] = await Promise.all([startSmtpServer({ security: 'starttls' }), startSmtpServer({ security: 'starttls', users: { dept: PASSWORD } })]);
  stack = await startStack({
    label: 'cli',
    config: {
      clients: [clientEntry(ops), clientEntry(app)],
      senders: [smtpSender({ id: 'desk', server: open })],
      delivery: { retry_initial: '200ms', retry_max: '1s' },
    },
  });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
  await Promise.all([open?.close(), authed?.close()]);
});

describe('relay against a running relay', () => {
  let deptKey = '';

  it('applies a sender and a client from files, and makes a key', async () => {
    const spec = managedSpec(smtpSender({ id: 'dept', server: authed, auth: { user: 'dept' } as never }));
    delete (spec.smtp.auth as Record<string, unknown>).password;
    writeFileSync(join(dir, 'sender.yaml'), stringify({ id: 'dept', ...spec, from: 'dept@campus.example' }));
    writeFileSync(join(dir, 'client.yaml'), stringify({ name: 'dept-app', senders: ['dept'] }));
    const applied = await relay(['senders', 'apply', '-f', join(dir, 'sender.yaml')]);
    expect(applied.code, applied.stderr).toBe(0);
    // Applying the same file again updates it (the etag is fetched first).
    expect((await relay(['senders', 'apply', '-f', join(dir, 'sender.yaml')])).code).toBe(0);
    expect((await relay(['clients', 'apply', '-f', join(dir, 'client.yaml')])).code).toBe(0);
    const table = await relay(['senders', 'list']);
    expect(table.stdout).toMatch(/desk\s.*file/);
    expect(table.stdout).toMatch(/dept\s.*api/);
    const key = json<{ apiKey: string }>(await relay(['keys', 'create', 'dept-app', '-o', 'json']));
    expect(key.apiKey).toMatch(/^rk_/);
    deptKey = key.apiKey;
  });

  it('sets a secret from stdin, sends with the new key, and shows the message', async () => {
    const set = await relay(['senders', 'set-secret', 'dept', 'smtp.auth.password'], { stdin: `${PASSWORD}\n` });
    expect(set.code, set.stderr).toBe(0);
    const shown = json<{ secrets: { field: string; set: boolean }[] }>(await relay(['senders', 'get', 'dept', '-o', 'json']));
    expect(shown.secrets).toEqual([expect.objectContaining({ field: 'smtp.auth.password', set: true })]);
    expect(JSON.stringify(shown)).not.toContain(PASSWORD);

    const sent = await relay(['send', '--sender', 'dept', '--to', 'x@example.org', '--subject', 'from the CLI', '--wait', '-o', 'json'], { key: deptKey });
    expect(sent.code, sent.stderr).toBe(0);
    const { messageId } = JSON.parse(sent.stdout) as { messageId: string };
    expect(authed.messages.some((m) => m.raw.toString().includes('from the CLI'))).toBe(true);

    const listed = json<{ messages: { messageId: string; state: string }[] }>(await relay(['messages', 'list', '--sender', 'dept', '-o', 'json']));
    expect(listed.messages).toEqual([expect.objectContaining({ messageId, state: 'MESSAGE_STATE_SENT' })]);
    const timeline = await relay(['messages', 'get', messageId]);
    expect(timeline.code).toBe(0);
    expect(timeline.stdout).toMatch(/QUEUED[\s\S]*SENT/);
    const queue = await relay(['queue', '-o', 'json']);
    expect(queue.code, queue.stderr).toBe(0);
    expect(queue.stdout).toContain('"dept"');
  });

  it('prints state changes live with tail', async () => {
    const child = spawn(process.execPath, [BIN, 'tail', '--sender', 'desk'], {
      env: { PATH: process.env.PATH ?? '', HOME: dir, XDG_CONFIG_HOME: dir, NO_COLOR: '1', RELAY_ADDRESS: stack.address, RELAY_API_KEY: ops.apiKey },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      // The watch starts with the call: give it a moment, then send until a line shows.
      const deadline = Date.now() + 20_000;
      while (!/SENT/.test(out) && Date.now() < deadline) {
        await relay(['send', '--sender', 'desk', '--to', 'y@example.org', '--subject', 'tailed'], { key: app.apiKey });
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(out).toMatch(/SENT\s+desk\s+app/);
    } finally {
      child.kill('SIGINT');
    }
  });

  it('exits with codes scripts can use', async () => {
    expect((await relay(['senders', 'get', 'nope'])).code).toBe(3);
    expect((await relay(['senders', 'list'], { key: app.apiKey })).code).toBe(4);
    expect((await relay(['senders', 'list'], { key: 'rk_not-a-key-of-this-relay-0000000000000' })).code).toBe(4);
    expect((await relay(['senders', 'delete', 'desk'])).code).toBe(1);
    expect((await relay(['senders', 'frobnicate'])).code).toBe(2);
  });
});
