import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { MessageState, type SendMailRequest } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { dir, relay, relayCli, sender, useFakeRelay } from './testing/fixture.js';
import { parse } from 'yaml';
import { grpcError, runCli } from './testing/fake-relay.js';

useFakeRelay();

describe('contexts', () => {
  it('uses the current context of $XDG_CONFIG_HOME/campus-relay/config.yaml, or the one named', async () => {
    const xdg = mkdtempSync(join(dir, 'xdg-'));
    const env = { XDG_CONFIG_HOME: xdg, PROD_KEY: 'prod-key' };
    expect((await runCli(['context', 'set', 'prod', '--address', relay.address, '--api-key-env', 'PROD_KEY'], { env })).code).toBe(0);
    expect((await runCli(['context', 'set', 'lab', '--address', '127.0.0.1:1'], { env })).code).toBe(0);
    const file = parse(readFileSync(join(xdg, 'campus-relay', 'config.yaml'), 'utf8'));
    expect(file).toEqual({
      'current-context': 'prod',
      contexts: [
        { name: 'prod', address: relay.address, api_key_env: 'PROD_KEY' },
        { name: 'lab', address: '127.0.0.1:1' },
      ],
    });

    relay.on('listSenders', () => ({ senders: [sender('no-reply')] }));
    const current = await runCli(['senders', 'list', '-o', 'json'], { env });
    expect(current.code).toBe(0);
    expect(relay.calls[0]?.authorization).toBe('Bearer prod-key');

    expect((await runCli(['senders', 'list', '--context', 'lab'], { env })).code).toBe(5);
    expect((await runCli(['context', 'use', 'lab'], { env })).code).toBe(0);
    expect((await runCli(['senders', 'list'], { env })).code).toBe(5);
    const listed = await runCli(['context', 'list'], { env });
    expect(listed.stdout).toMatch(/\*\s+lab\s+127\.0\.0\.1:1/);

    const missing = await runCli(['senders', 'list', '--context', 'nope'], { env });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no context "nope"');
  });

  it('names the key of a broken contexts file', async () => {
    const xdg = mkdtempSync(join(dir, 'xdg-'));
    const path = join(xdg, 'campus-relay', 'config.yaml');
    await runCli(['context', 'set', 'x', '--address', '127.0.0.1:1'], { env: { XDG_CONFIG_HOME: xdg } });
    writeFileSync(path, 'contexts:\n  - name: x\n    adress: 127.0.0.1:1\n');
    const res = await runCli(['senders', 'list'], { env: { XDG_CONFIG_HOME: xdg } });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(`${path}: contexts[0].adress: unknown key`);
  });
});

describe('relay send', () => {
  it('sends a message as npm run send did', async () => {
    relay.on('sendMail', () => ({ messageId: 'm-77', state: MessageState.QUEUED }));
    const attachment = join(dir, 'report.pdf');
    writeFileSync(attachment, 'pdf');
    const res = await relayCli(['send', '--sender', 'no-reply', '--to', 'a@campus.example, b@campus.example', '--subject', 'Hi', '--attach', attachment]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^message m-77: QUEUED \(sender no-reply, relay 127\.0\.0\.1:\d+, \d+ B\)\n$/);
    expect(relay.calls[0]?.request).toMatchObject({
      sender: 'no-reply',
      to: ['a@campus.example', 'b@campus.example'],
      subject: 'Hi',
      attachments: [{ filename: 'report.pdf', contentType: 'application/pdf' }],
    });
  });

  it('sends an attachment over the old 64 MiB client limit, and refuses one over its own 160 MiB itself', async () => {
    relay.on('sendMail', (req: SendMailRequest) => ({ messageId: `m-${req.attachments[0]?.content.length}`, state: MessageState.QUEUED }));
    const big = join(dir, 'big.bin');
    writeFileSync(big, '');
    truncateSync(big, 65 * 1024 * 1024); // sparse: nothing written to disk
    const res = await relayCli(['send', '--sender', 'registrar', '--to', 'a@campus.example', '--subject', 'Big', '--attach', big]);
    expect(res.stderr).toBe('');
    expect(res.stdout).toMatch(/^message m-68157440: QUEUED \(sender registrar, relay [^,]+, 65\.0 MiB\)\n$/);

    relay.calls.length = 0;
    truncateSync(big, 161 * 1024 * 1024);
    const tooBig = await relayCli(['send', '--sender', 'registrar', '--to', 'a@campus.example', '--subject', 'Big', '--attach', big]);
    expect(tooBig.code).toBe(2);
    expect(tooBig.stderr).toMatch(/^relay: the attachments alone are 161\.0 MiB, over the 160\.0 MiB this command sends in one call/);
    expect(relay.calls).toEqual([]);
    rmSync(big);
  });

  it('says what a refusal means, with its status name and exit code', async () => {
    relay.on('sendMail', () => {
      throw grpcError(status.PERMISSION_DENIED, 'client "app" may not send as "billing"');
    });
    const res = await relayCli(['send', '--sender', 'billing', '--to', 'a@campus.example', '--subject', 'Hi']);
    expect(res.code).toBe(4);
    expect(res.stderr).toMatch(/^relay: PERMISSION_DENIED: this API key may not send as "billing"/);
    const usage = await relayCli(['send', '--sender', 'billing', '--subject', 'Hi']);
    expect(usage).toMatchObject({ code: 2, stderr: 'relay: no recipient: give at least one --to (or --cc, --bcc)\n' });
  });
});

describe('usage', () => {
  it('exits 2 on an unknown command or option, and documents the exit codes', async () => {
    expect((await runCli(['sendrs'])).code).toBe(2);
    expect((await runCli(['senders', 'list', '--bogus'])).code).toBe(2);
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('5  the relay is unreachable');
  });
});
