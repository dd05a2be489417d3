import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import {
  AdminService,
  DeliveryOutcome,
  GetMessageResponseSchema,
  type GetMessageResponse,
  ListMessagesResponseSchema,
  MessageState,
  type MessageSummary,
  type SentCopy,
  SentCopyState,
} from '@relay/proto';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { formatDuration, parseTime } from '../duration.js';
import { EXIT, UsageError } from '../errors.js';
import { formatTime, isStructured, type Output, printMessage, printTable, printValue, truncate } from '../output.js';
import { parseState, type Runtime, stateName } from '../runtime.js';
import { listAll } from './paging.js';

type ForCommand = (cmd: Command) => Runtime;

interface FilterOptions {
  state?: string;
  sender?: string;
  client?: string;
  recipient?: string;
  subject?: string;
  since?: string;
  until?: string;
}

/** Messages per RetryMessages / CancelMessages call in a bulk action, so progress can be shown. */
const BULK_BATCH = 100;
/** Most messages one bulk action selects; more must be narrowed by filters or run again. */
const MAX_BULK = 100_000;
const MAX_LIST = 100_000;

function addFilters(cmd: Command): Command {
  return cmd
    .option('--state <state>', 'queued, sending, sent, retrying, failed or bounced')
    .option('--sender <id>', 'only this sender')
    .option('--client <name>', 'only messages this client sent')
    .option('--recipient <address>', 'only messages to this address')
    .option('--subject <text>', 'only messages whose subject contains this text (any case)')
    .option('--since <time>', 'changed at or after: a duration ago (24h, 7d) or an ISO 8601 time')
    .option('--until <time>', 'changed before: a duration ago or an ISO 8601 time');
}

function toFilters(opts: FilterOptions) {
  const now = new Date();
  return {
    state: opts.state ? parseState(opts.state) : MessageState.UNSPECIFIED,
    sender: opts.sender ?? '',
    client: opts.client ?? '',
    recipient: opts.recipient ?? '',
    subject: opts.subject ?? '',
    since: opts.since ? timestampFromDate(parseTime(opts.since, '--since', now)) : undefined,
    until: opts.until ? timestampFromDate(parseTime(opts.until, '--until', now)) : undefined,
  };
}

function describeFilters(opts: FilterOptions): string {
  return (['state', 'sender', 'client', 'recipient', 'subject', 'since', 'until'] as const)
    .filter((k) => opts[k] !== undefined)
    .map((k) => `--${k} ${opts[k]}`)
    .join(' ');
}

function parseLimit(value: string, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--limit "${value}": expected a whole number from 1 to ${max}`);
  return n;
}

export function registerMessages(program: Command, rt: ForCommand): void {
  const messages = program.command('messages').alias('msg').description('find, inspect, retry and cancel messages');

  addFilters(messages.command('list').alias('ls'))
    .option('--limit <n>', 'at most this many, newest first', '100')
    .description('list messages, newest first (dead letters: --state failed)')
    .action(async (opts: FilterOptions & { limit: string }, cmd: Command) => {
      const r = rt(cmd);
      const limit = parseLimit(opts.limit, MAX_LIST);
      const filters = toFilters(opts);
      let more = false;
      const all = await listAll(
        async (pageToken) => {
          const res = await r.client.call(AdminService.method.listMessages, { ...filters, pageSize: Math.min(1000, limit), pageToken }, r.call());
          more = res.nextPageToken !== '';
          return res;
        },
        (res) => res.messages,
        limit,
      );
      if (isStructured(r.output.format)) return printMessage(r.output, ListMessagesResponseSchema, create(ListMessagesResponseSchema, { messages: all }));
      if (all.length === 0) return r.output.err('no messages match');
      printMessageTable(r.output, all);
      if (more && all.length >= limit) r.output.err(`(first ${limit}; more match: narrow the filters or raise --limit)`);
    });

  messages
    .command('get')
    .alias('show')
    .argument('<id>', 'message id')
    .description('show a message and its history as a timeline')
    .action(async (id: string, _opts, cmd: Command) => {
      const r = rt(cmd);
      const res = await r.client.getMessage(id, r.call());
      if (isStructured(r.output.format)) return printMessage(r.output, GetMessageResponseSchema, res);
      printTimeline(r.output, res);
    });

  for (const action of ['retry', 'cancel'] as const) {
    addFilters(
      messages
        .command(action)
        .argument('[ids...]', 'message ids; or select messages with the filters instead')
        .option('--yes', 'go ahead with a filter-based action (without it, only the count of matching messages is shown)')
        .option('--limit <n>', `at most this many messages (filter-based)`, String(MAX_BULK)),
    )
      .description(
        action === 'retry'
          ? 'send FAILED messages again (same message id, a new attempt)'
          : 'cancel QUEUED or RETRYING messages (they end FAILED "cancelled by <client>")',
      )
      .action((ids: string[], opts: FilterOptions & { yes?: boolean; limit: string }, cmd: Command) => bulk(rt(cmd), action, ids, opts));
  }
}

async function bulk(r: Runtime, action: 'retry' | 'cancel', ids: string[], opts: FilterOptions & { yes?: boolean; limit: string }): Promise<void> {
  const o = r.output;
  const filterText = describeFilters(opts);
  if (ids.length > 0 && filterText) throw new UsageError(`give message ids or filters (${filterText}), not both`);
  if (ids.length === 0 && !filterText) throw new UsageError(`no messages selected: give message ids, or filters such as --state failed --sender ID`);
  const limit = parseLimit(opts.limit, MAX_BULK);
  let selected = ids;
  if (ids.length === 0) {
    const filters = toFilters(opts);
    // Ids first, then batches of them: the count to confirm is the count acted on, and progress can be shown.
    const found = await listAll(
      (pageToken) => r.client.call(AdminService.method.listMessages, { ...filters, pageSize: 1000, pageToken }, r.call()),
      (res) => res.messages,
      limit,
    );
    selected = found.map((m) => m.messageId);
    if (!opts.yes && !isStructured(o.format)) {
      const n = selected.length === 1 ? '1 message matches' : `${selected.length} messages match`;
      o.err(`${n} ${filterText}; add --yes to ${action} ${selected.length === 1 ? 'it' : 'them'}`);
      if (selected.length > 0) process.exitCode = EXIT.usage;
      return;
    }
  }
  const callBatch = async (messageIds: string[]) =>
    action === 'retry'
      ? (await r.client.call(AdminService.method.retryMessages, { messageIds }, r.call())).count
      : (await r.client.call(AdminService.method.cancelMessages, { messageIds }, r.call())).count;
  const bar =
    o.stderrIsTTY && !isStructured(o.format) && selected.length > BULK_BATCH
      ? new SingleBar({ format: `${action} [{bar}] {value}/{total}`, stream: process.stderr })
      : undefined;
  bar?.start(selected.length, 0);
  let done = 0;
  let count = 0;
  try {
    for (let i = 0; i < selected.length; i += BULK_BATCH) {
      const batch = selected.slice(i, i + BULK_BATCH);
      count += await callBatch(batch);
      done += batch.length;
      bar?.update(done);
    }
  } finally {
    bar?.stop();
  }
  const verb = action === 'retry' ? 'retried' : 'cancelled';
  if (isStructured(o.format)) return printValue(o, { action, selected: selected.length, [verb]: count, messageIds: selected });
  const skipped = selected.length - count;
  const why = action === 'retry' ? 'not FAILED' : 'not QUEUED or RETRYING';
  o.out(`${verb} ${count} of ${selected.length} message${selected.length === 1 ? '' : 's'}${skipped > 0 ? ` (${skipped} ${why} or unknown)` : ''}`);
  if (ids.length === 0 && selected.length >= limit) o.err(`stopped at --limit ${limit}: more may match; run it again`);
}

function stateColor(o: Output, state: MessageState, text: string): string {
  switch (state) {
    case MessageState.SENT:
      return o.color('green', text);
    case MessageState.FAILED:
    case MessageState.BOUNCED:
      return o.color('red', text);
    case MessageState.RETRYING:
      return o.color('yellow', text);
    default:
      return text;
  }
}

export function printMessageTable(o: Output, all: MessageSummary[]): void {
  const wide = o.format === 'wide';
  const head = ['id', 'state', 'sender', 'to', 'subject', 'attempts', 'updated'];
  if (wide) head.push('client', 'last-error');
  printTable(
    o,
    head,
    all.map((m) => {
      const row = [
        m.messageId,
        stateColor(o, m.state, stateName(m.state)),
        m.sender,
        truncate(m.to.join(', '), wide ? 60 : 30),
        truncate(m.subject, wide ? 60 : 30),
        String(m.attempts),
        formatTime(m.updatedAt),
      ];
      if (wide) row.push(m.client || '-', truncate(m.lastError, 80) || '-');
      return row;
    }),
  );
}

export function printTimeline(o: Output, res: GetMessageResponse): void {
  const label = (k: string) => o.color('bold', `${k}:`.padEnd(12));
  o.out(`${label('Message')}${res.messageId}`);
  o.out(`${label('State')}${stateColor(o, res.state, stateName(res.state))} (${res.attempts} attempt${res.attempts === 1 ? '' : 's'})`);
  o.out(`${label('Sender')}${res.sender || '-'}`);
  if (res.lastError) o.out(`${label('Last error')}${res.lastError}`);
  if (res.traceId) o.out(`${label('Trace')}${res.traceId}`);
  if (res.sentCopy) o.out(`${label('Sent copy')}${sentCopyLine(res.sentCopy)}`);
  if (res.recipientOutcomes.length > 0) {
    // What the delivery reports read from the sender's mailbox said, per recipient.
    o.out(o.color('bold', 'Recipients:'));
    for (const r of res.recipientOutcomes) {
      const outcome = (DeliveryOutcome[r.outcome] ?? 'UNSPECIFIED').padEnd(10);
      o.out(`  ${formatTime(r.at)}  ${outcome}${r.recipient}${r.status || r.diagnostic ? `  ${r.diagnostic || r.status}` : ''}`);
    }
  }
  if (res.history.length === 0) return;
  o.out(o.color('bold', 'History:'));
  const first = res.history[0]?.at ? timestampDate(res.history[0].at).getTime() : undefined;
  for (const h of res.history) {
    const at = h.at ? timestampDate(h.at).getTime() : undefined;
    const offset = at !== undefined && first !== undefined ? `+${formatDuration(at - first)}` : '';
    const attempt = h.attempt ? `attempt ${h.attempt}` : '';
    o.out(`  ${formatTime(h.at)}  ${offset.padEnd(8)}${stateColor(o, h.state, stateName(h.state).padEnd(9))}${attempt.padEnd(11)}${h.detail}`.trimEnd());
    if (h.remedy) o.out(`${' '.repeat(52)}What to do: ${h.remedy}`);
  }
}

/** Where the copy to the Sent folder stands (copy_to_sent), on one line. */
export function sentCopyLine(c: SentCopy): string {
  const tries = `${c.attempts} attempt${c.attempts === 1 ? '' : 's'}`;
  const at = c.at ? `, ${formatTime(c.at)}` : '';
  switch (c.state) {
    case SentCopyState.COPIED:
      return `copied${c.folder ? ` to ${c.folder}` : ''} (${tries}${at})`;
    case SentCopyState.RETRYING:
      return `retrying (${tries}${at})${c.lastError ? `: ${c.lastError}` : ''}`;
    case SentCopyState.GAVE_UP:
      return `gave up (${tries}${at})${c.lastError ? `: ${c.lastError}` : ''}`;
    default:
      return 'unknown';
  }
}
