import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { status } from '@grpc/grpc-js';
import { grpcCode } from '@relay/client';
import {
  AdminService,
  BeginConsentResponseSchema,
  type CredentialStatus,
  ListSendersResponseSchema,
  PutSenderResponseSchema,
  type Sender,
  SenderSchema,
  type TestSenderResponse,
  TestSenderResponseSchema,
  SetSenderSecretResponseSchema,
} from '@relay/proto';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { parseDuration } from '../duration.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { readManifest } from '../manifest.js';
import { readHiddenLine } from '../prompt.js';
import { formatTime, isStructured, printMessage, printTable, printValue, protoJson } from '../output.js';
import { readStdin, type Runtime } from '../runtime.js';
import { listAll } from './paging.js';

type ForCommand = (cmd: Command) => Runtime;

const MAX_SECRET_BYTES = 64 * 1024;

export function registerSenders(program: Command, rt: ForCommand): void {
  const senders = program.command('senders').description('list, show, create, change, test and delete senders');

  senders
    .command('list')
    .alias('ls')
    .description('list every sender (from relay.yaml and those managed here)')
    .action(async (_opts, cmd: Command) => {
      const r = rt(cmd);
      const all = await listAll(
        (pageToken) => r.client.call(AdminService.method.listSenders, { pageSize: 1000, pageToken }, r.call()),
        (res) => res.senders,
      );
      if (isStructured(r.output.format)) return printMessage(r.output, ListSendersResponseSchema, create(ListSendersResponseSchema, { senders: all }));
      if (all.length === 0) return r.output.err('no senders');
      const head = ['id', 'transport', 'from', 'managed-by', 'secrets', 'updated'];
      if (r.output.format === 'wide') head.push('etag', 'updated-by');
      printTable(
        r.output,
        head,
        all.map((s) => {
          const row = [s.id, str(s.spec?.transport), str(s.spec?.from), s.managedBy || '-', secretSummary(s), formatTime(s.updatedAt)];
          if (r.output.format === 'wide') row.push(s.etag || '-', s.updatedBy || '-');
          return row;
        }),
      );
    });

  senders
    .command('get')
    .argument('<id>', 'sender id')
    .description('show one sender: its settings (secrets left out), which secrets are set, its version')
    .action(async (id: string, _opts, cmd: Command) => {
      const r = rt(cmd);
      const res = await r.client.call(AdminService.method.getSender, { id }, r.call());
      const s = res.sender;
      if (!s) throw new CliError(`the relay returned no sender for "${id}"`);
      if (isStructured(r.output.format)) return printMessage(r.output, SenderSchema, s);
      printSender(r, s, res.credential);
    });

  senders
    .command('apply')
    .requiredOption('-f, --file <path>', 'a relay.yaml-style sender entry (snake_case keys, with its id); - for stdin')
    .option('--dry-run', 'only check: the relay runs every check of a real apply and stores nothing')
    .description('create a sender, or update it to the file (reads it first and updates only that version)')
    .action(async (opts: { file: string; dryRun?: boolean }, cmd: Command) => {
      const r = rt(cmd);
      const entries = await readManifest(opts.file, 'senders', 'id');
      const results = [];
      for (const { id, spec } of entries) {
        let etag = '';
        try {
          etag = (await r.client.call(AdminService.method.getSender, { id }, r.call())).sender?.etag ?? '';
        } catch (err) {
          if (grpcCode(err) !== status.NOT_FOUND) throw err;
        }
        const res = await r.client.call(AdminService.method.putSender, { sender: { id, spec, etag }, validateOnly: Boolean(opts.dryRun) }, r.call());
        results.push(res);
        if (!isStructured(r.output.format)) r.output.out(`sender/${id} ${res.created ? 'created' : 'configured'}${opts.dryRun ? ' (dry run)' : ''}`);
      }
      if (isStructured(r.output.format)) {
        // One entry: the PutSender answer; several: a list of them.
        const json = results.map((res) => protoJson(PutSenderResponseSchema, res));
        printValue(r.output, json.length === 1 ? json[0] : json);
      }
    });

  senders
    .command('delete')
    .alias('rm')
    .argument('<id>', 'sender id')
    .option('--force', 'delete even while mail is queued for it (that mail waits until a sender with this id exists again)')
    .description('delete a sender managed here (relay.yaml senders are changed in relay.yaml)')
    .action(async (id: string, opts: { force?: boolean }, cmd: Command) => {
      const r = rt(cmd);
      await r.client.call(AdminService.method.deleteSender, { id, force: Boolean(opts.force) }, r.call());
      if (isStructured(r.output.format)) printValue(r.output, { deleted: id });
      else r.output.out(`sender/${id} deleted`);
    });

  senders
    .command('test')
    .argument('<id>', 'sender id')
    .option('--to <address>', 'also send a test message to this address')
    .description('check connect, TLS, auth and token against the provider (exit code 1 when a step fails)')
    .action(async (id: string, opts: { to?: string }, cmd: Command) => {
      const r = rt(cmd);
      const res = await r.client.call(AdminService.method.testSender, { sender: id, to: opts.to ?? '' }, { deadlineMs: Math.max(r.timeoutMs, 60_000) });
      if (isStructured(r.output.format)) printMessage(r.output, TestSenderResponseSchema, res);
      else printTest(r, id, res);
      if (!res.ok) process.exitCode = EXIT.relay;
    });

  senders
    .command('consent')
    .argument('<id>', 'an oauth2 sender id')
    .option('--wait-for <duration>', 'how long to wait for the sign-in to finish', '10m')
    .option('--interval <duration>', 'how often to check whether it finished', '3s')
    .option('--no-wait', 'print the sign-in address and return')
    .description(
      'the "Authenticate with MFA" step: prints the provider\'s sign-in address to open in a browser, then checks every few seconds ' +
        'until the relay holds a new refresh token for the sender, and tests the sender once',
    )
    .action(async (id: string, opts: { waitFor: string; interval: string; wait: boolean }, cmd: Command) => {
      const r = rt(cmd);
      const waitMs = parseDuration(opts.waitFor, '--wait-for');
      const intervalMs = Math.max(100, parseDuration(opts.interval, '--interval'));
      if (!opts.wait) {
        const res = await r.client.call(AdminService.method.beginConsent, { sender: id }, r.call());
        if (isStructured(r.output.format)) printMessage(r.output, BeginConsentResponseSchema, res);
        else r.output.out(res.authorizeUrl);
        return;
      }
      // The token held before, so that only one stored by this sign-in ends the wait.
      const before = refreshTokenSetAt((await r.client.call(AdminService.method.getSender, { id }, r.call())).sender);
      const res = await r.client.call(AdminService.method.beginConsent, { sender: id }, r.call());
      r.output.err(`Open this address in a browser and sign in as the sender's mailbox (it works once):`);
      if (isStructured(r.output.format)) r.output.err(res.authorizeUrl);
      else r.output.out(res.authorizeUrl);
      r.output.err(`Waiting up to ${opts.waitFor} for the sign-in to finish (Ctrl-C stops waiting; the address stays valid)…`);
      const deadline = Date.now() + waitMs;
      for (;;) {
        await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
        const now = refreshTokenSetAt((await r.client.call(AdminService.method.getSender, { id }, r.call())).sender);
        if (now !== undefined && now !== before) break;
        if (Date.now() >= deadline) throw new CliError(`no new refresh token for sender ${id} after ${opts.waitFor}; run relay senders consent ${id} again`);
      }
      r.output.err('Signed in: the relay holds a refresh token. Testing the sender…');
      const test = await r.client.call(AdminService.method.testSender, { sender: id }, { deadlineMs: Math.max(r.timeoutMs, 60_000) });
      if (isStructured(r.output.format)) printMessage(r.output, TestSenderResponseSchema, test);
      else printTest(r, id, test);
      if (!test.ok) process.exitCode = EXIT.relay;
    });

  senders
    .command('set-secret')
    .argument('<id>', 'sender id')
    .argument('<field>', 'e.g. smtp.auth.password, smtp.auth.client_secret, smtp.auth.refresh_token, graph.client_secret')
    .addOption(new Option('--from-env <var>', 'read the value from this environment variable'))
    .description(
      'set a sender secret; the value is read from stdin (typed without echo on a terminal, or piped in) or --from-env, never from the command line; it is never shown again',
    )
    .action(async (id: string, field: string, opts: { fromEnv?: string }, cmd: Command) => {
      const r = rt(cmd);
      let value: string;
      if (opts.fromEnv) {
        value = r.env[opts.fromEnv] ?? '';
        if (!value) throw new UsageError(`--from-env ${opts.fromEnv}: that environment variable is not set or empty`);
      } else {
        // A terminal: typed without echo. Otherwise piped in, where one trailing newline is what
        // `echo` and editors add, not part of the secret.
        value = process.stdin.isTTY
          ? await readHiddenLine(`${field} for sender ${id} (not shown): `, MAX_SECRET_BYTES)
          : (await readStdin(MAX_SECRET_BYTES, field)).replace(/\r?\n$/, '');
        if (!value) throw new UsageError(`no value for ${field} on stdin`);
      }
      const res = await r.client.call(AdminService.method.setSenderSecret, { id, field, value }, r.call());
      if (isStructured(r.output.format)) return printMessage(r.output, SetSenderSecretResponseSchema, res);
      r.output.out(`sender/${id} ${field} set`);
    });
}

function str(v: unknown): string {
  return typeof v === 'string' && v ? v : '-';
}

function secretSummary(s: Sender): string {
  if (s.secrets.length === 0) return '-';
  return `${s.secrets.filter((x) => x.set).length}/${s.secrets.length} set`;
}

/** When the sender's refresh token was last stored (as ms), or undefined when it has none. */
function refreshTokenSetAt(s: Sender | undefined): number | undefined {
  const secret = s?.secrets.find((x) => x.field.endsWith('refresh_token') && x.set);
  if (!secret) return undefined;
  return secret.setAt ? timestampDate(secret.setAt).getTime() : 0;
}

function printSender(r: Runtime, s: Sender, credential?: CredentialStatus): void {
  const o = r.output;
  const rows: Array<[string, string]> = [
    ['Id', s.id],
    ['Managed by', s.managedBy || '-'],
    ['Etag', s.etag || '-'],
    ['Updated', `${formatTime(s.updatedAt)}${s.updatedBy ? ` by ${s.updatedBy}` : ''}`],
  ];
  if (s.owners.length) rows.push(['Owners', s.owners.join(', ')]);
  for (const [k, v] of rows) o.out(`${o.color('bold', `${k}:`.padEnd(12))}${v}`);
  if (s.secrets.length) {
    o.out(o.color('bold', 'Secrets:'));
    for (const x of s.secrets) {
      const state = x.set ? o.color('green', 'set') : o.color('yellow', 'not set');
      o.out(`  ${x.field.padEnd(28)}${state}${x.setAt ? `  ${formatTime(x.setAt)}` : ''}${x.setBy ? ` by ${x.setBy}` : ''}`);
    }
  }
  printSignIn(r, s, credential);
  o.out(o.color('bold', 'Settings:'));
  o.out(
    stringify(s.spec ?? {})
      .trimEnd()
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
  );
}

/** Who consented and the access token's times, for a sender that signs in with tokens (or has any of these facts). */
function printSignIn(r: Runtime, s: Sender, c: CredentialStatus | undefined): void {
  const o = r.output;
  const spec = (s.spec ?? {}) as { transport?: unknown; smtp?: { auth?: { type?: unknown; flow?: unknown } }; graph?: { flow?: unknown } };
  const tokens = spec.transport === 'graph' || spec.smtp?.auth?.type === 'oauth2';
  const known = c && (c.consentedBy || c.consentedAt || c.tokenRefreshedAt);
  if (!tokens && !known) return;
  o.out(o.color('bold', 'Sign-in:'));
  if (!c) {
    o.out('  unknown (the credentials service did not answer)');
    return;
  }
  if (spec.smtp?.auth?.flow === 'refresh_token' || spec.graph?.flow === 'refresh_token' || c.consentedBy) {
    o.out(`  ${'consented by'.padEnd(28)}${c.consentedBy ? `${c.consentedBy}  ${formatTime(c.consentedAt)}` : o.color('yellow', 'nobody yet')}`);
  }
  o.out(`  ${'token refreshed'.padEnd(28)}${c.tokenRefreshedAt ? formatTime(c.tokenRefreshedAt) : 'not yet'}`);
  if (c.tokenExpiresAt) o.out(`  ${'token expires'.padEnd(28)}${formatTime(c.tokenExpiresAt)}`);
}

function printTest(r: Runtime, id: string, res: TestSenderResponse): void {
  const o = r.output;
  for (const step of res.steps) {
    // A warning passed but needs attention soon (a credential close to its expiry).
    const mark = !step.ok ? o.color('red', 'FAIL') : step.warning ? o.color('yellow', 'WARN') : o.color('green', 'ok  ');
    o.out(`${mark}  ${step.name.padEnd(7)} ${step.detail}`);
  }
  if (res.remedy) o.out(`\n${o.color('bold', 'How to fix it:')} ${res.remedy}`);
  o.out(res.ok ? `sender/${id}: ${o.color('green', 'test passed')}` : `sender/${id}: ${o.color('red', 'test failed')}`);
}
