import { AdminService, CreateWebhookSecretResponseSchema, ListWebhookDeliveriesResponseSchema } from '@relay/proto';
import type { Command } from 'commander';
import { formatDuration, parseDuration } from '../duration.js';
import { UsageError } from '../errors.js';
import { formatTime, isStructured, printMessage, printTable } from '../output.js';
import type { Runtime } from '../runtime.js';

type ForCommand = (cmd: Command) => Runtime;

/** What the relay keeps per endpoint. */
const MAX_LIMIT = 64;
/** How long a replaced secret signs too unless --keep-previous says otherwise (the relay's own default). */
const DEFAULT_KEEP_PREVIOUS = '24h';
const MAX_KEEP_PREVIOUS_MS = 30 * 86_400_000;

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
        if (e.heldReason) r.output.out(`  held: ${e.heldReason}`);
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

  webhooks
    .command('secret')
    .argument('<client>', 'client name (managed through the API)')
    .argument('<url>', "the webhook's url, as in the client's settings")
    .option('--keep-previous <duration>', `how long the secret it replaces signs too (0s: it stops at once; at most 30d)`, DEFAULT_KEEP_PREVIOUS)
    .description("make a new signing secret for a client's webhook; it is printed once, and its waiting events go out")
    .action(async (client: string, url: string, opts: { keepPrevious: string }, cmd: Command) => {
      const keepMs = parseDuration(opts.keepPrevious, '--keep-previous');
      if (keepMs > MAX_KEEP_PREVIOUS_MS) throw new UsageError('--keep-previous: at most 30d');
      const r = rt(cmd);
      const res = await r.client.call(AdminService.method.createWebhookSecret, { client, url, keepPreviousSeconds: Math.round(keepMs / 1000) }, r.call());
      if (isStructured(r.output.format)) return printMessage(r.output, CreateWebhookSecretResponseSchema, res);
      const o = r.output;
      o.err(`New signing secret for the webhook ${url} of client ${client}:`);
      o.out(res.secret);
      o.err(o.colorErr('yellow', 'Give it to the receiver now: it is not shown again (relay-credentials keeps it sealed).'));
      if (res.previousUntil)
        o.err(`Deliveries carry a signature with the previous secret too for ${formatDuration(keepMs)}, until ${formatTime(res.previousUntil)}.`);
    });
}
