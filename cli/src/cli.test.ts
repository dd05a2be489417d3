import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { status } from '@grpc/grpc-js';
import {
  type CreateApiKeyRequest,
  type GetSenderRequest,
  type ListMessagesRequest,
  MessageState,
  type PutSenderRequest,
  type RetryMessagesRequest,
  type SetSenderSecretRequest,
  type WatchMessagesRequest,
} from '@relay/proto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type FakeRelay, grpcError, runCli, startFakeRelay } from './testing/fake-relay.js';

let relay: FakeRelay;
let dir: string;
const at = timestampFromDate(new Date('2030-01-02T03:04:05Z'));

beforeAll(async () => {
  relay = await startFakeRelay();
  dir = mkdtempSync(join(tmpdir(), 'relay-cli-'));
});

afterAll(async () => {
  await relay.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => relay.reset());

/** The relay at the fake's address with an admin key from the environment, as most tests want it. */
const relayCli = (args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}) =>
  runCli(args, { ...opts, env: { RELAY_ADDRESS: relay.address, RELAY_API_KEY: 'admin-key', ...opts.env } });

const sender = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  spec: { id, from: `${id}@campus.example`, transport: 'smtp', smtp: { host: 'smtp.office365.com', port: 587 } },
  managedBy: 'api',
  etag: `etag-${id}-1`,
  secrets: [{ field: 'smtp.auth.password', set: true, setAt: at }],
  updatedAt: at,
  ...extra,
});

describe('relay senders', () => {
  it('lists senders as a table, sending the API key from RELAY_API_KEY', async () => {
    relay.on('listSenders', () => ({ senders: [sender('no-reply'), sender('billing', { managedBy: 'file', secrets: [] })] }));
    const res = await relayCli(['senders', 'list']);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+TRANSPORT\s+FROM\s+MANAGED-BY\s+SECRETS\s+UPDATED$/);
    expect(lines[1]).toMatch(/^no-reply\s+smtp\s+no-reply@campus\.example\s+api\s+1\/1 set\s+2030-01-02 03:04:05Z$/);
    expect(lines[2]).toMatch(/^billing\s+smtp\s+billing@campus\.example\s+file\s+-\s+/);
    expect(relay.calls).toMatchObject([{ method: 'listSenders', authorization: 'Bearer admin-key' }]);
  });

  it('follows next_page_token and prints proto JSON with -o json', async () => {
    relay.on('listSenders', (req: { pageToken: string }) =>
      req.pageToken === '' ? { senders: [sender('a')], nextPageToken: 'p2' } : { senders: [sender('b')], nextPageToken: '' },
    );
    const res = await relayCli(['senders', 'list', '-o', 'json']);
    expect(res.code).toBe(0);
    const json = JSON.parse(res.stdout) as { senders: Array<{ id: string; managedBy: string; spec: { from: string } }> };
    expect(json.senders.map((s) => s.id)).toEqual(['a', 'b']);
    expect(json.senders[0]).toMatchObject({ managedBy: 'api', spec: { from: 'a@campus.example' } });
    expect(relay.calls.map((c) => (c.request as { pageToken: string }).pageToken)).toEqual(['', 'p2']);
  });

  it('prints one sender as YAML with -o yaml', async () => {
    relay.on('getSender', (req: GetSenderRequest) => ({ sender: sender(req.id) }));
    const res = await relayCli(['-o', 'yaml', 'senders', 'get', 'no-reply']);
    expect(res.code).toBe(0);
    expect(parse(res.stdout)).toMatchObject({
      id: 'no-reply',
      etag: 'etag-no-reply-1',
      spec: { smtp: { port: 587 } },
      secrets: [{ field: 'smtp.auth.password', set: true }],
    });
  });

  it('applies a file: reads the sender first and updates that version', async () => {
    const file = join(dir, 'sender.yaml');
    writeFileSync(
      file,
      'id: no-reply\nfrom: no-reply@campus.example\ntransport: smtp\nsmtp:\n  host: smtp.office365.com\n  port: 587\nrate: { preset: microsoft365-smtp }\n',
    );
    relay.on('getSender', (req: GetSenderRequest) => ({ sender: sender(req.id) }));
    relay.on('putSender', (req: PutSenderRequest) => ({ sender: { ...req.sender, etag: 'etag-2' }, created: false }));
    const res = await relayCli(['senders', 'apply', '-f', file]);
    expect(res).toMatchObject({ code: 0, stdout: 'sender/no-reply configured\n' });
    expect(relay.calls.map((c) => c.method)).toEqual(['getSender', 'putSender']);
    const put = relay.calls[1]?.request as PutSenderRequest;
    expect(put.sender).toMatchObject({
      id: 'no-reply',
      etag: 'etag-no-reply-1',
      spec: { transport: 'smtp', smtp: { port: 587 }, rate: { preset: 'microsoft365-smtp' } },
    });
  });

  it('applies a new sender with an empty etag when GetSender says NOT_FOUND', async () => {
    const file = join(dir, 'new.yaml');
    writeFileSync(file, 'senders:\n  - id: registrar\n    from: registrar@campus.example\n    transport: graph\n');
    relay.on('getSender', (req: GetSenderRequest) => {
      throw grpcError(status.NOT_FOUND, `no sender "${req.id}"`);
    });
    relay.on('putSender', (req: PutSenderRequest) => ({ sender: req.sender, created: true }));
    const res = await relayCli(['senders', 'apply', '-f', file, '-o', 'json']);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ created: true, sender: { id: 'registrar' } });
    expect((relay.calls[1]!.request as PutSenderRequest).sender?.etag).toBe('');
  });

  it('exits 6 when the sender changed in between (ABORTED)', async () => {
    const file = join(dir, 'sender.yaml');
    relay.on('getSender', (req: GetSenderRequest) => ({ sender: sender(req.id) }));
    relay.on('putSender', () => {
      throw grpcError(status.ABORTED, 'sender no-reply: etag etag-no-reply-1 is not the current version');
    });
    const res = await relayCli(['senders', 'apply', '-f', file]);
    expect(res.code).toBe(6);
    expect(res.stderr).toContain('relay: ABORTED: sender no-reply: etag etag-no-reply-1 is not the current version');
  });

  it('exits 3 on NOT_FOUND, naming the status and the relay', async () => {
    relay.on('getSender', (req: GetSenderRequest) => {
      throw grpcError(status.NOT_FOUND, `no sender "${req.id}"`);
    });
    const res = await relayCli(['senders', 'get', 'nope']);
    expect(res).toMatchObject({ code: 3, stdout: '' });
    expect(res.stderr).toBe(`relay: NOT_FOUND: no sender "nope" (relay ${relay.address})\n`);
  });

  it('exits 4 when the key is refused', async () => {
    relay.on('listSenders', () => {
      throw grpcError(status.PERMISSION_DENIED, 'client "billing-app" is not an admin');
    });
    const res = await relayCli(['senders', 'list']);
    expect(res.code).toBe(4);
    expect(res.stderr).toMatch(/^relay: PERMISSION_DENIED: client "billing-app" is not an admin; AdminService calls need a key of a client with admin: true/);
  });

  it('exits 5 when the relay is unreachable', async () => {
    const res = await runCli(['senders', 'list', '--address', '127.0.0.1:1']);
    expect(res.code).toBe(5);
    expect(res.stderr).toMatch(/^relay: UNAVAILABLE: cannot reach the relay at 127\.0\.0\.1:1/);
  });

  it('reads a secret from stdin or --from-env, never from argv', async () => {
    relay.on('setSenderSecret', (req: SetSenderSecretRequest) => ({ secret: { field: req.field, set: true, setAt: at } }));
    const piped = await relayCli(['senders', 'set-secret', 'no-reply', 'smtp.auth.password'], { stdin: 's3cret pass\n' });
    expect(piped).toMatchObject({ code: 0, stdout: 'sender/no-reply smtp.auth.password set\n' });
    const fromEnv = await relayCli(['senders', 'set-secret', 'no-reply', 'graph.client_secret', '--from-env', 'GRAPH_SECRET'], {
      env: { GRAPH_SECRET: 'from-env-value' },
    });
    expect(fromEnv.code).toBe(0);
    expect(relay.calls.map((c) => c.request as SetSenderSecretRequest).map((r) => [r.id, r.field, r.value])).toEqual([
      ['no-reply', 'smtp.auth.password', 's3cret pass'],
      ['no-reply', 'graph.client_secret', 'from-env-value'],
    ]);
    const argv = await relayCli(['senders', 'set-secret', 'no-reply', 'smtp.auth.password', 'the-value']);
    expect(argv.code).toBe(2);
    expect(argv.stderr).toContain('too many arguments');
    const unset = await relayCli(['senders', 'set-secret', 'no-reply', 'smtp.auth.password', '--from-env', 'NOT_SET']);
    expect(unset).toMatchObject({ code: 2, stderr: 'relay: --from-env NOT_SET: that environment variable is not set or empty\n' });
    expect(relay.calls).toHaveLength(2);
  });

  it('prints the test steps and exits 1 when one failed', async () => {
    relay.on('testSender', () => ({
      ok: false,
      steps: [
        { name: 'connect', ok: true, detail: '220 smtp.office365.com' },
        { name: 'auth', ok: false, detail: '535 5.7.139 Authentication unsuccessful' },
      ],
      remedy: 'SMTP AUTH is disabled for the tenant',
    }));
    const res = await relayCli(['senders', 'test', 'no-reply', '--to', 'me@campus.example']);
    expect(res.code).toBe(1);
    expect(res.stdout).toContain('FAIL  auth    535 5.7.139 Authentication unsuccessful');
    expect(res.stdout).toContain('How to fix it: SMTP AUTH is disabled for the tenant');
    expect(relay.calls[0]?.request).toMatchObject({ sender: 'no-reply', to: 'me@campus.example' });
  });
});

describe('relay keys', () => {
  it('prints a new key once on stdout, with the warning on stderr; rotate sets the overlap', async () => {
    relay.on('createApiKey', (req: CreateApiKeyRequest) => ({ key: { id: 'k_2', createdAt: at }, apiKey: `rk_secret_for_${req.client}` }));
    const res = await relayCli(['keys', 'rotate', 'billing-app', '--overlap', '2h']);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe('rk_secret_for_billing-app\n');
    expect(res.stderr).toContain('not shown again');
    expect(res.stderr).toContain('other keys stop working in 2h');
    expect(relay.calls[0]?.request).toMatchObject({ client: 'billing-app', expireOthersAfterSeconds: 7200 });
    const plain = await relayCli(['keys', 'create', 'billing-app']);
    expect(plain.code).toBe(0);
    expect((relay.calls[1]!.request as CreateApiKeyRequest).expireOthersAfterSeconds).toBeUndefined();
  });
});

describe('relay messages', () => {
  const summary = (i: number, state = MessageState.FAILED) => ({
    messageId: `m-${i}`,
    state,
    sender: 'no-reply',
    client: 'billing-app',
    subject: `Invoice ${i}`,
    to: [`student${i}@campus.example`],
    attempts: 3,
    lastError: '550 5.7.30 basic auth retired',
    updatedAt: at,
  });

  it('lists with filters, pages up to --limit', async () => {
    relay.on('listMessages', (req: ListMessagesRequest) =>
      req.pageToken === '' ? { messages: [summary(1), summary(2)], nextPageToken: 'p2' } : { messages: [summary(3)], nextPageToken: 'p3' },
    );
    const res = await relayCli(['messages', 'list', '--state', 'failed', '--sender', 'no-reply', '--since', '24h', '--limit', '3']);
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n')[0]).toMatch(/^ID\s+STATE\s+SENDER\s+TO\s+SUBJECT\s+ATTEMPTS\s+UPDATED$/);
    expect(res.stdout).toMatch(/m-3\s+FAILED\s+no-reply\s+student3@campus\.example\s+Invoice 3\s+3\s+2030-01-02 03:04:05Z/);
    expect(res.stderr).toContain('first 3; more match');
    const req = relay.calls[0]?.request as ListMessagesRequest;
    expect(req).toMatchObject({ state: MessageState.FAILED, sender: 'no-reply', pageSize: 3 });
    const since = Number(req.since?.seconds) * 1000;
    expect(Math.abs(since - (Date.now() - 86_400_000))).toBeLessThan(60_000);
  });

  it('shows a message history as a timeline', async () => {
    relay.on('getMessage', (req: { messageId: string }) => ({
      messageId: req.messageId,
      state: MessageState.SENT,
      attempts: 2,
      sender: 'no-reply',
      history: [
        { state: MessageState.QUEUED, at, detail: 'accepted' },
        { state: MessageState.RETRYING, at: timestampFromDate(new Date('2030-01-02T03:04:35Z')), attempt: 1, detail: '421 4.7.0 try again' },
        { state: MessageState.SENT, at: timestampFromDate(new Date('2030-01-02T03:06:05Z')), attempt: 2, detail: '250 2.0.0 OK' },
      ],
    }));
    const res = await relayCli(['messages', 'get', 'm-9']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('SENT (2 attempts)');
    expect(res.stdout).toContain('2030-01-02 03:04:35Z  +30s    RETRYING attempt 1  421 4.7.0 try again');
    expect(res.stdout).toContain('2030-01-02 03:06:05Z  +2m     SENT     attempt 2  250 2.0.0 OK');
  });

  it('retries by filter only with --yes, in batches, and prints a summary', async () => {
    const all = Array.from({ length: 150 }, (_, i) => summary(i));
    relay.on('listMessages', (req: ListMessagesRequest) =>
      req.pageToken === '' ? { messages: all.slice(0, 100), nextPageToken: 'p2' } : { messages: all.slice(100), nextPageToken: '' },
    );
    relay.on('retryMessages', (req: RetryMessagesRequest) => ({ count: req.messageIds.filter((id) => id !== 'm-7').length }));

    const dry = await relayCli(['messages', 'retry', '--state', 'failed', '--sender', 'no-reply']);
    expect(dry.code).toBe(2);
    expect(dry.stderr).toBe('150 messages match --state failed --sender no-reply; add --yes to retry them\n');
    expect(relay.calls.some((c) => c.method === 'retryMessages')).toBe(false);

    relay.calls.length = 0;
    const res = await relayCli(['messages', 'retry', '--state', 'failed', '--sender', 'no-reply', '--yes']);
    expect(res).toMatchObject({ code: 0, stdout: 'retried 149 of 150 messages (1 not FAILED or unknown)\n' });
    const batches = relay.calls.filter((c) => c.method === 'retryMessages').map((c) => (c.request as RetryMessagesRequest).messageIds.length);
    expect(batches).toEqual([100, 50]);
    expect(relay.calls[0]?.request).toMatchObject({ state: MessageState.FAILED, sender: 'no-reply' });

    relay.calls.length = 0;
    const json = await relayCli(['messages', 'cancel', 'm-1', 'm-2', '-o', 'json']);
    expect(json.code).toBe(1); // no answer set for cancelMessages: the fake's UNIMPLEMENTED
    expect(json.stderr).toContain('UNIMPLEMENTED');
  });

  it('needs ids or filters, not neither', async () => {
    const res = await relayCli(['messages', 'cancel']);
    expect(res).toMatchObject({ code: 2, stderr: 'relay: no messages selected: give message ids, or filters such as --state failed --sender ID\n' });
  });
});

describe('relay tail and queue', () => {
  it('prints one line per streamed event and ends with the stream', async () => {
    relay.on('watchMessages', () => [
      { messageId: 'm-1', state: MessageState.SENDING, sender: 'no-reply', client: 'billing-app', at, attempt: 1 },
      { messageId: 'm-1', state: MessageState.SENT, sender: 'no-reply', client: 'billing-app', at, attempt: 1, detail: '250 2.0.0 OK' },
    ]);
    const res = await relayCli(['tail', '--sender', 'no-reply', '--state', 'sent']);
    expect(res.code).toBe(0);
    expect(res.stdout.trimEnd().split('\n')).toEqual([
      '2030-01-02T03:04:05.000Z  m-1  SENDING    no-reply  billing-app  attempt 1',
      '2030-01-02T03:04:05.000Z  m-1  SENT       no-reply  billing-app  attempt 1  250 2.0.0 OK',
    ]);
    expect(relay.calls[0]?.request as WatchMessagesRequest).toMatchObject({ sender: 'no-reply', state: MessageState.SENT });
    const json = await relayCli(['tail', '-o', 'json']);
    expect(
      json.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l).state),
    ).toEqual(['MESSAGE_STATE_SENDING', 'MESSAGE_STATE_SENT']);
  });

  it('shows queue statistics per sender', async () => {
    relay.on('getQueueStats', () => ({
      senders: [
        {
          sender: 'no-reply',
          queued: 12n,
          held: 10n,
          sending: 2n,
          retrying: 1n,
          failed24h: 3n,
          oldestAgeSeconds: 90n,
          recipientsToday: 420n,
          dailyRecipientCap: 10_000n,
        },
      ],
    }));
    const res = await relayCli(['queue']);
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n')[0]).toMatch(/^SENDER\s+QUEUED\s+HELD\s+SENDING\s+RETRYING\s+FAILED-24H\s+OLDEST\s+RECIPIENTS-TODAY\s+NEXT-RELEASE$/);
    expect(res.stdout).toMatch(/no-reply\s+12\s+10\s+2\s+1\s+3\s+1m30s\s+420\/10000\s+-/);
  });
});

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
