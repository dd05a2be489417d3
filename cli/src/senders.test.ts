import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { CreateApiKeyRequest, GetSenderRequest, PutClientRequest, PutSenderRequest, SetSenderSecretRequest } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { at, dir, relay, relayCli, sender, useFakeRelay } from './testing/fixture.js';
import { parse } from 'yaml';
import { grpcError, runCli } from './testing/fake-relay.js';

useFakeRelay();

const later = timestampFromDate(new Date('2030-01-02T04:04:05Z'));

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

  it('shows who consented and when the token was refreshed and expires', async () => {
    const oauth = { id: 'mfa', from: 'mfa@campus.example', transport: 'smtp', smtp: { auth: { type: 'oauth2', flow: 'refresh_token' } } };
    relay.on('getSender', (req: GetSenderRequest) =>
      req.id === 'mfa'
        ? {
            sender: sender('mfa', { spec: oauth }),
            credential: { consentedBy: 'mfa@campus.example', consentedAt: at, tokenRefreshedAt: at, tokenExpiresAt: later },
          }
        : { sender: sender(req.id, { spec: { ...oauth, id: req.id } }) },
    );
    const res = await relayCli(['senders', 'get', 'mfa']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(
      /Sign-in:\n\s+consented by\s+mfa@campus\.example {2}2030-01-02 03:04:05Z\n\s+token refreshed\s+2030-01-02 03:04:05Z\n\s+token expires\s+2030-01-02 04:04:05Z\n/,
    );
    // Nothing known yet, or the credentials service did not answer: said so.
    const none = await relayCli(['senders', 'get', 'other']);
    expect(none.stdout).toMatch(/Sign-in:\n\s+unknown \(the credentials service did not answer\)/);
  });

  it('says a delegated Graph sender has no consent yet', async () => {
    const spec = { id: 'dept', from: 'dept@campus.example', transport: 'graph', graph: { mailbox: 'dept@campus.example', flow: 'refresh_token' } };
    relay.on('getSender', (req: GetSenderRequest) => ({ sender: sender(req.id, { spec }), credential: {} }));
    const res = await relayCli(['senders', 'get', 'dept']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/Sign-in:\n\s+consented by\s+nobody yet\n\s+token refreshed\s+not yet\n/);
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

  it('only checks with --dry-run: PutSender with validate_only, said in the output', async () => {
    const file = join(dir, 'dry.yaml');
    writeFileSync(file, 'id: no-reply\nfrom: no-reply@campus.example\ntransport: smtp\nsmtp:\n  host: smtp.office365.com\n  port: 587\n');
    relay.on('getSender', (req: GetSenderRequest) => ({ sender: sender(req.id) }));
    relay.on('putSender', (req: PutSenderRequest) => ({ sender: req.sender, created: false }));
    const res = await relayCli(['senders', 'apply', '--dry-run', '-f', file]);
    expect(res).toMatchObject({ code: 0, stdout: 'sender/no-reply configured (dry run)\n' });
    expect(relay.calls[1]?.request).toMatchObject({ validateOnly: true, sender: { id: 'no-reply', etag: 'etag-no-reply-1' } });
    relay.on('putSender', () => {
      throw grpcError(status.INVALID_ARGUMENT, 'smtp.port: expected a number, got the string "x"');
    });
    const bad = await relayCli(['senders', 'apply', '--dry-run', '-f', file]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('INVALID_ARGUMENT: smtp.port: expected a number');
    const real = await relayCli(['senders', 'apply', '-f', file]);
    expect(real.stderr).toContain('INVALID_ARGUMENT');
    expect(relay.calls.at(-1)?.request).toMatchObject({ validateOnly: false });
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

describe('relay senders test with a warning', () => {
  it('marks a step that passed with a warning WARN and still exits 0', async () => {
    relay.on('testSender', () => ({
      ok: true,
      steps: [
        { name: 'credential expiry', ok: true, warning: true, detail: 'client secret expires 2027-06-30 (in 12 days)' },
        { name: 'token', ok: true, detail: 'app-only Graph token' },
      ],
    }));
    const res = await relayCli(['senders', 'test', 'registrar']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('WARN  credential expiry client secret expires 2027-06-30 (in 12 days)');
    expect(res.stdout).toContain('ok    token   app-only Graph token');
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

describe('relay clients smtp-password', () => {
  it('prints the new password once on stdout with the username and the warning on stderr', async () => {
    relay.on('createSmtpPassword', () => ({ username: 'cafe@campus.example', password: 'made-by-the-relay' }));
    const res = await relayCli(['clients', 'smtp-password', 'cafe']);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe('made-by-the-relay\n');
    expect(res.stderr).toContain('username cafe@campus.example');
    expect(res.stderr).toContain('not shown again');
    expect(relay.calls[0]).toMatchObject({ method: 'createSmtpPassword', request: { client: 'cafe' } });
  });
});

describe('relay senders consent', () => {
  it('prints the sign-in address, waits for a new refresh token, then tests the sender', async () => {
    let reads = 0;
    relay.on('getSender', (req: GetSenderRequest) => {
      reads++;
      // The token arrives on the third read: after BeginConsent and one check without it.
      const token = reads >= 3 ? [{ field: 'smtp.auth.refresh_token', set: true, setAt: at }] : [];
      return { sender: sender(req.id, { secrets: token }) };
    });
    relay.on('beginConsent', () => ({ authorizeUrl: 'https://login.example/authorize?state=s1' }));
    relay.on('testSender', () => ({ ok: true, steps: [{ name: 'token', ok: true, detail: 'access token for no-reply@campus.example' }] }));
    const res = await relayCli(['senders', 'consent', 'no-reply', '--interval', '100ms', '--wait-for', '20s']);
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n')[0]).toBe('https://login.example/authorize?state=s1');
    expect(res.stdout).toContain('ok    token   access token for no-reply@campus.example');
    expect(res.stderr).toContain('Signed in');
    expect(relay.calls.map((c) => c.method)).toEqual(['getSender', 'beginConsent', 'getSender', 'getSender', 'testSender']);
  });
});

describe('relay clients', () => {
  it('lists clients, applies one with the etag from the list, and revokes a key', async () => {
    const billing = {
      name: 'billing-app',
      spec: { name: 'billing-app', senders: ['no-reply', 'billing'] },
      managedBy: 'api',
      etag: 'c-etag-1',
      apiKeys: [{ id: 'k_1', createdAt: at }],
      updatedAt: at,
    };
    relay.on('listClients', () => ({ clients: [billing] }));
    relay.on('putClient', (req: PutClientRequest) => ({ client: req.client, created: req.client?.etag === '' }));
    relay.on('revokeApiKey', () => ({}));

    const list = await relayCli(['clients', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/billing-app\s+no-reply,billing\s+no\s+1\s+api\s+2030-01-02 03:04:05Z/);

    const file = join(dir, 'clients.yaml');
    writeFileSync(
      file,
      'clients:\n  - name: billing-app\n    senders: [no-reply]\n  - name: printer\n    senders: [no-reply]\n    smtp: { allow_ips: [10.0.0.0/24] }\n',
    );
    relay.calls.length = 0;
    const apply = await relayCli(['clients', 'apply', '-f', file]);
    expect(apply).toMatchObject({ code: 0, stdout: 'client/billing-app configured\nclient/printer created\n' });
    expect(relay.calls.filter((c) => c.method === 'putClient').map((c) => (c.request as PutClientRequest).client?.etag)).toEqual(['c-etag-1', '']);

    const withKey = join(dir, 'with-key.yaml');
    writeFileSync(withKey, 'name: x\napi_key: env:X\n');
    const refused = await relayCli(['clients', 'apply', '-f', withKey]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('leave api_key out');

    const revoke = await relayCli(['keys', 'revoke', 'billing-app', 'k_1']);
    expect(revoke).toMatchObject({ code: 0, stdout: 'key k_1 of client/billing-app revoked\n' });
    expect(relay.calls.at(-1)?.request).toMatchObject({ client: 'billing-app', keyId: 'k_1' });
  });
});
