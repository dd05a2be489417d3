import { AdminService, ListSuppressionsResponseSchema } from '@relay/proto';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { formatTime, isStructured, printMessage, printTable } from '../output.js';
import type { Runtime } from '../runtime.js';

type ForCommand = (cmd: Command) => Runtime;

const MAX_LIMIT = 1000;

export function registerSuppressions(program: Command, rt: ForCommand): void {
  const suppressions = program.command('suppressions').description('recipients that hard-bounced (refused or flagged for clients with suppression)');

  suppressions
    .command('list')
    .argument('[address]', 'one address (case-insensitive); all when absent')
    .option('--limit <n>', `entries, newest first (at most ${MAX_LIMIT})`, '100')
    .description('the hard bounces on the list: address, when, status and diagnostic')
    .action(async (address: string | undefined, opts: { limit: string }, cmd: Command) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new UsageError(`--limit: a whole number from 1 to ${MAX_LIMIT}`);
      const r = rt(cmd);
      const res = await r.client.call(AdminService.method.listSuppressions, { address: address ?? '', limit }, r.call());
      if (isStructured(r.output.format)) return printMessage(r.output, ListSuppressionsResponseSchema, res);
      if (res.suppressions.length === 0) return r.output.err(address ? `${address} is not on the suppression list` : 'the suppression list is empty');
      printTable(
        r.output,
        ['address', 'bounced', 'status', 'sender', 'message', 'diagnostic'],
        res.suppressions.map((s) => [s.address, formatTime(s.at), s.status || '-', s.sender || '-', s.messageId || '-', s.diagnostic || '-']),
      );
      if (res.total > BigInt(res.suppressions.length)) r.output.err(`${res.suppressions.length} of ${res.total} shown; raise --limit for more`);
    });

  suppressions
    .command('remove')
    .argument('<address>', 'the address to take off the list (its mailbox works again)')
    .description('takes an address off the suppression list')
    .action(async (address: string, _opts: unknown, cmd: Command) => {
      const r = rt(cmd);
      const res = await r.client.call(AdminService.method.deleteSuppression, { address }, r.call());
      if (res.deleted) r.output.out(`removed ${address} from the suppression list`);
      else r.output.err(`${address} was not on the suppression list`);
    });
}
