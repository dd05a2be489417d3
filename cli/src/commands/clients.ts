import { create } from '@bufbuild/protobuf';
import {
  AdminService,
  type ApiKeyInfo,
  ApiKeyInfoSchema,
  type Client,
  CreateApiKeyResponseSchema,
  CreateSmtpPasswordResponseSchema,
  ListClientsResponseSchema,
  PutClientResponseSchema,
} from '@relay/proto';
import type { Command } from 'commander';
import { parseDuration, formatDuration } from '../duration.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { readManifest } from '../manifest.js';
import { formatTime, isStructured, printMessage, printTable, printValue, protoJson } from '../output.js';
import type { Runtime } from '../runtime.js';
import { listAll } from './paging.js';

type ForCommand = (cmd: Command) => Runtime;

/** How long a rotated client's other keys keep working unless --overlap says otherwise. */
const DEFAULT_OVERLAP = '24h';

async function allClients(r: Runtime): Promise<Client[]> {
  return listAll(
    (pageToken) => r.client.call(AdminService.method.listClients, { pageSize: 1000, pageToken }, r.call()),
    (res) => res.clients,
  );
}

export function registerClients(program: Command, rt: ForCommand): void {
  const clients = program.command('clients').description('list and create or change clients (applications and devices that submit mail)');

  clients
    .command('list')
    .alias('ls')
    .description('list every client')
    .action(async (_opts, cmd: Command) => {
      const r = rt(cmd);
      const all = await allClients(r);
      if (isStructured(r.output.format)) return printMessage(r.output, ListClientsResponseSchema, create(ListClientsResponseSchema, { clients: all }));
      if (all.length === 0) return r.output.err('no clients');
      printTable(
        r.output,
        ['name', 'senders', 'admin', 'keys', 'managed-by', 'updated'],
        all.map((c) => {
          const senders = Array.isArray(c.spec?.senders) ? c.spec.senders.join(',') || '-' : '-';
          return [c.name, senders, c.spec?.admin === true ? 'yes' : 'no', String(c.apiKeys.length), c.managedBy || '-', formatTime(c.updatedAt)];
        }),
      );
    });

  clients
    .command('apply')
    .requiredOption('-f, --file <path>', 'a relay.yaml-style client entry (snake_case keys, with its name, without api_key); - for stdin')
    .description('create a client, or update it to the file (only the version that was read)')
    .action(async (opts: { file: string }, cmd: Command) => {
      const r = rt(cmd);
      const entries = await readManifest(opts.file, 'clients', 'name');
      for (const e of entries) {
        if ('api_key' in e.spec) throw new UsageError(`-f ${opts.file}: client ${e.id}: leave api_key out; create keys with relay keys create ${e.id}`);
      }
      const existing = await allClients(r);
      const results = [];
      for (const { id, spec } of entries) {
        const etag = existing.find((c) => c.name === id)?.etag ?? '';
        const res = await r.client.call(AdminService.method.putClient, { client: { name: id, spec, etag } }, r.call());
        results.push(res);
        if (!isStructured(r.output.format)) r.output.out(`client/${id} ${res.created ? 'created' : 'configured'}`);
      }
      if (isStructured(r.output.format)) {
        const json = results.map((res) => protoJson(PutClientResponseSchema, res));
        printValue(r.output, json.length === 1 ? json[0] : json);
      }
    });

  clients
    .command('smtp-password')
    .argument('<client>', 'client name (with smtp.username in its settings)')
    .description('make a new SMTP AUTH password for a client; it is printed once and replaces the old one')
    .action(async (client: string, _opts, cmd: Command) => {
      const r = rt(cmd);
      const res = await r.client.call(AdminService.method.createSmtpPassword, { client }, r.call());
      if (isStructured(r.output.format)) return printMessage(r.output, CreateSmtpPasswordResponseSchema, res);
      const o = r.output;
      o.err(`New SMTP password for client ${client} (username ${res.username}):`);
      o.out(res.password);
      o.err(o.colorErr('yellow', 'Store it now: it is not shown again (the relay keeps only a digest).'));
    });
}

export function registerKeys(program: Command, rt: ForCommand): void {
  const keys = program.command('keys').description("create, rotate, list and revoke a client's API keys");

  keys
    .command('list')
    .alias('ls')
    .argument('<client>', 'client name')
    .description("list a client's keys (their ids, never the keys)")
    .action(async (client: string, _opts, cmd: Command) => {
      const r = rt(cmd);
      const found = (await allClients(r)).find((c) => c.name === client);
      if (!found) throw new CliError(`no client "${client}"`, EXIT.notFound);
      if (isStructured(r.output.format))
        return printValue(
          r.output,
          found.apiKeys.map((k) => protoJson(ApiKeyInfoSchema, k)),
        );
      if (found.apiKeys.length === 0) return r.output.err(`client ${client} has no keys`);
      printTable(r.output, ['id', 'created', 'expires', 'created-by'], found.apiKeys.map(keyRow));
    });

  const create = async (client: string, rotate: boolean, overlap: string | undefined, cmd: Command) => {
    const r = rt(cmd);
    if (overlap !== undefined && !rotate) throw new UsageError('--overlap goes with --rotate (or use relay keys rotate)');
    const overlapMs = rotate ? parseDuration(overlap ?? DEFAULT_OVERLAP, '--overlap') : undefined;
    const req = overlapMs === undefined ? { client } : { client, expireOthersAfterSeconds: Math.round(overlapMs / 1000) };
    const res = await r.client.call(AdminService.method.createApiKey, req, r.call());
    if (isStructured(r.output.format)) return printMessage(r.output, CreateApiKeyResponseSchema, res);
    const o = r.output;
    o.err(`New API key for client ${client} (key id ${res.key?.id ?? '-'}${res.key?.expiresAt ? `, expires ${formatTime(res.key.expiresAt)}` : ''}):`);
    o.out(res.apiKey);
    o.err(o.colorErr('yellow', 'Store it now: it is not shown again (the relay keeps only a digest).'));
    if (overlapMs !== undefined) {
      o.err(overlapMs === 0 ? `The client's other keys stopped working.` : `The client's other keys stop working in ${formatDuration(overlapMs)}.`);
    }
  };

  keys
    .command('create')
    .argument('<client>', 'client name')
    .option('--rotate', `end the client's other keys after --overlap (default ${DEFAULT_OVERLAP})`)
    .option('--overlap <duration>', 'with --rotate: how long the other keys keep working (0s: at once)')
    .description('create an API key for a client; it is printed once')
    .action((client: string, opts: { rotate?: boolean; overlap?: string }, cmd: Command) => create(client, Boolean(opts.rotate), opts.overlap, cmd));

  keys
    .command('rotate')
    .argument('<client>', 'client name')
    .option('--overlap <duration>', `how long the other keys keep working (0s: at once)`, DEFAULT_OVERLAP)
    .description('same as keys create --rotate: a new key, and the others end after the overlap')
    .action((client: string, opts: { overlap: string }, cmd: Command) => create(client, true, opts.overlap, cmd));

  keys
    .command('revoke')
    .argument('<client>', 'client name')
    .argument('<key-id>', 'the key id (relay keys list CLIENT)')
    .description('revoke one key at once')
    .action(async (client: string, keyId: string, _opts, cmd: Command) => {
      const r = rt(cmd);
      await r.client.call(AdminService.method.revokeApiKey, { client, keyId }, r.call());
      if (isStructured(r.output.format)) printValue(r.output, { revoked: keyId, client });
      else r.output.out(`key ${keyId} of client/${client} revoked`);
    });
}

function keyRow(k: ApiKeyInfo): string[] {
  return [k.id, formatTime(k.createdAt), k.expiresAt ? formatTime(k.expiresAt) : 'never', k.createdBy || '-'];
}
