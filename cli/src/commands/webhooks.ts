import { AdminService, ListWebhookDeliveriesResponseSchema } from '@relay/proto';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { formatTime, isStructured, printMessage, printTable } from '../output.js';
import type { Runtime } from '../runtime.js';

type ForCommand = (cmd: Command) => Runtime;

/** What the relay keeps per endpoint. */
const MAX_LIMIT = 64;

export function registerWebhooks(program: Command, rt: ForCommand): void {
  const webhooks = program.command('webhooks').description("a client's webhooks: what waits for each endpoint and its last deliveries");

  webhooks
    .command('deliveries')
    .argument('<client>', 'client name')
    .option('--limit <n>', `attempts per endpoint, newest first (at most ${MAX_LIMIT})`, '20')
    .description('per endpoint of the client: events waiting, then the last attempts with the receiver answer')
    .action(async (client: string, opts: { limit: string }, cmd: Command) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new UsageError(`--limit: a whole number from 1 to ${MAX_LIMIT}`);
      const r = rt(cmd);
      const res = await r.client.call(AdminService.method.listWebhookDeliveries, { client, limit }, r.call());
      if (isStructured(r.output.format)) return printMessage(r.output, ListWebhookDeliveriesResponseSchema, res);
      if (res.endpoints.length === 0) return r.output.err(`client ${client} has no webhooks`);
      for (const [i, e] of res.endpoints.entries()) {
        if (i > 0) r.output.out('');
        r.output.out(`${e.url}  events: ${e.events.join(',')}  pending: ${e.pending}`);
        if (e.deliveries.length === 0) {
          r.output.out('  no deliveries yet');
          continue;
        }
        printTable(
          r.output,
          ['time', 'event', 'message', 'attempt', 'status', 'ms', 'error'],
          e.deliveries.map((d) => [
            formatTime(d.at),
            d.eventType,
            d.messageId,
            String(d.attempt),
            d.statusCode ? String(d.statusCode) : '-',
            String(d.durationMs),
            d.error || '-',
          ]),
        );
      }
    });
}
