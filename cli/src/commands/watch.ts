import { setTimeout as sleep } from 'node:timers/promises';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { AdminService, GetQueueStatsResponseSchema, type GetQueueStatsResponse, MessageEventSchema, MessageState, type MessageEvent } from '@relay/proto';
import type { Command } from 'commander';
import { stringify as yamlStringify } from 'yaml';
import { formatDuration, parseDuration } from '../duration.js';
import { formatTime, isStructured, type Output, printTable, protoJson } from '../output.js';
import { parseState, type Runtime, stateName } from '../runtime.js';

type ForCommand = (cmd: Command) => Runtime;

/** An AbortSignal that fires on Ctrl-C (and SIGTERM): watching ends quietly with exit code 0. */
function untilInterrupted(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

export function registerQueue(program: Command, rt: ForCommand): void {
  program
    .command('queue')
    .description('queue statistics per sender: queued, held by pacing, sending, retrying, failed in 24 h, daily recipients')
    .option('--sender <id>', 'only this sender')
    .option('-w, --watch', 'refresh until Ctrl-C')
    .option('--interval <duration>', 'with --watch: how often', '2s')
    .action(async (opts: { sender?: string; watch?: boolean; interval: string }, cmd: Command) => {
      const r = rt(cmd);
      const intervalMs = Math.max(500, parseDuration(opts.interval, '--interval'));
      const read = () => r.client.call(AdminService.method.getQueueStats, { sender: opts.sender ?? '' }, r.call());
      if (!opts.watch) return printQueue(r.output, await read(), false);
      const { signal, dispose } = untilInterrupted();
      try {
        while (!signal.aborted) {
          const stats = await read();
          if (r.output.stdoutIsTTY && !isStructured(r.output.format)) r.output.out('\x1b[2J\x1b[H');
          printQueue(r.output, stats, true);
          await sleep(intervalMs, undefined, { signal }).catch(() => undefined);
        }
      } finally {
        dispose();
      }
    });
}

function printQueue(o: Output, res: GetQueueStatsResponse, watching: boolean): void {
  if (isStructured(o.format)) {
    // Watching: one JSON document per line (NDJSON), so a script can read them as they come.
    const value = protoJson(GetQueueStatsResponseSchema, res);
    if (o.format === 'json') o.out(watching ? JSON.stringify(value) : JSON.stringify(value, null, 2));
    else o.out(`${watching ? '---\n' : ''}${yamlStringify(value).trimEnd()}`);
    return;
  }
  if (watching) o.out(o.color('dim', `${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}  (Ctrl-C to stop)`));
  if (res.senders.length === 0) {
    o.out('no senders');
    return;
  }
  printTable(
    o,
    ['sender', 'queued', 'held', 'sending', 'retrying', 'failed-24h', 'oldest', 'recipients-today', 'next-release'],
    res.senders.map((s) => [
      s.sender,
      String(s.queued),
      String(s.held),
      String(s.sending),
      s.retrying > 0n ? o.color('yellow', String(s.retrying)) : '0',
      s.failed24h > 0n ? o.color('red', String(s.failed24h)) : '0',
      s.oldestAgeSeconds > 0n ? formatDuration(Number(s.oldestAgeSeconds) * 1000) : '-',
      s.dailyRecipientCap > 0n ? `${s.recipientsToday}/${s.dailyRecipientCap}` : String(s.recipientsToday),
      s.nextReleaseAt ? formatTime(s.nextReleaseAt) : '-',
    ]),
  );
}

export function registerTail(program: Command, rt: ForCommand): void {
  program
    .command('tail')
    .description('print state changes of messages as they happen, one line each, until Ctrl-C (like kubectl get -w)')
    .option('--state <state>', 'only changes to this state')
    .option('--sender <id>', 'only this sender')
    .option('--client <name>', 'only messages this client sent')
    .action(async (opts: { state?: string; sender?: string; client?: string }, cmd: Command) => {
      const r = rt(cmd);
      const req = { state: opts.state ? parseState(opts.state) : MessageState.UNSPECIFIED, sender: opts.sender ?? '', client: opts.client ?? '' };
      const { signal, dispose } = untilInterrupted();
      try {
        for await (const ev of r.client.stream(AdminService.method.watchMessages, req, { signal })) printEvent(r.output, ev);
      } catch (err) {
        if (!signal.aborted) throw err;
      } finally {
        dispose();
      }
    });
}

function printEvent(o: Output, ev: MessageEvent): void {
  if (isStructured(o.format)) {
    const value = protoJson(MessageEventSchema, ev);
    o.out(o.format === 'json' ? JSON.stringify(value) : `---\n${yamlStringify(value).trimEnd()}`);
    return;
  }
  const at = ev.at ? timestampDate(ev.at).toISOString() : '-';
  const state = stateName(ev.state).padEnd(9);
  const colored =
    ev.state === MessageState.SENT
      ? o.color('green', state)
      : ev.state === MessageState.FAILED || ev.state === MessageState.BOUNCED
        ? o.color('red', state)
        : ev.state === MessageState.RETRYING
          ? o.color('yellow', state)
          : state;
  const attempt = ev.attempt ? `attempt ${ev.attempt}` : '';
  o.out(`${at}  ${ev.messageId}  ${colored}  ${ev.sender || '-'}  ${ev.client || '-'}  ${attempt}  ${ev.detail}`.replace(/\s+$/, ''));
}
