import { readFile, stat } from 'node:fs/promises';
import { relative } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { grpcCode } from '@relay/client';
import { MessageState, SendMailRequestSchema, SendMailResponseSchema } from '@relay/proto';
import type { Command } from 'commander';
import { formatBytes } from '../duration.js';
import { CliError, EXIT, exitCodeForStatus, UsageError } from '../errors.js';
import { isStructured, printMessage, printValue, protoJson } from '../output.js';
import { MAX_GRPC_MESSAGE_BYTES, type Runtime, stateName } from '../runtime.js';
import { type AttachmentFile, buildRequest, type SendOptions, toSendArgs } from '../send/args.js';
import { describeSendError, WAIT_DEFAULTS, waitForOutcome } from '../send/flow.js';
import { GetMessageResponseSchema } from '@relay/proto';
import { printTimeline } from './messages.js';

type ForCommand = (cmd: Command) => Runtime;

/** SendMail answers once the message is stored; longer than this means something is wrong. */
const SEND_DEADLINE_MS = 120_000;

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerSend(program: Command, rt: ForCommand): void {
  program
    .command('send')
    .description('hand one message to the relay (MailService.SendMail), and with --wait follow it until it is SENT or FAILED')
    .option('--sender <id>', 'a sender id from the relay config (default: the demo sender of npm run stack)')
    .option('--to <address>', 'a recipient; repeat, or separate with commas', collect)
    .option('--cc <address>', 'Cc; repeatable', collect)
    .option('--bcc <address>', 'Bcc; repeatable', collect)
    .option('--reply-to <address>', 'Reply-To')
    .option('--subject <text>', 'subject line (required)')
    .option('--text <text>', 'plain-text body (default: a short greeting when there is no other body)')
    .option('--html <html>', 'HTML body')
    .option('--attach <path>', 'attach a file; repeatable', collect)
    .option('--header <name=value>', 'an extra header; repeatable', collect)
    .option('--idempotency-key <key>', 'the same key with the same message returns the first message id')
    .option('--send-at <time>', 'not before this ISO 8601 time, e.g. 2030-01-01T08:00:00Z')
    .option('--wait', `follow the message until it is SENT or FAILED (up to ${WAIT_DEFAULTS.timeoutMs / 1000} s)`)
    .addHelpText('after', '\nAfter `npm run stack` in demo mode: relay send --to you@example.test --subject "Hello" --wait')
    .action(async (opts: SendOptions, cmd: Command) => {
      const r = rt(cmd);
      const args = toSendArgs(opts);
      const target = r.target;
      const sender = args.sender ?? target.stack?.sender;
      if (!sender) throw new UsageError('--sender is required: the id of a sender in the relay config (npm run stack in demo mode makes one called "demo")');
      // Sizes first, so a message too large for one call is refused before gigabytes are read.
      let attachedBytes = 0;
      for (const path of args.attach) attachedBytes += await fileSize(path);
      if (attachedBytes > MAX_GRPC_MESSAGE_BYTES) throw tooLarge(attachedBytes, 'the attachments alone are');
      const files: AttachmentFile[] = await Promise.all(
        args.attach.map(async (path) => {
          try {
            return { path, content: await readFile(path) };
          } catch (err) {
            throw new CliError(`--attach ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.usage, { cause: err });
          }
        }),
      );
      const req = create(SendMailRequestSchema, buildRequest(args, sender, files));
      const size = toBinary(SendMailRequestSchema, req).length;
      if (size > MAX_GRPC_MESSAGE_BYTES) throw tooLarge(size);
      const ctx = { address: target.address, sender, apiKeySet: Boolean(target.apiKey) };
      const o = r.output;
      try {
        const sent = await r.client.sendMail(req, { deadlineMs: Math.max(r.timeoutMs, SEND_DEADLINE_MS) });
        if (!args.wait) {
          if (isStructured(o.format)) return printMessage(o, SendMailResponseSchema, sent);
          return o.out(`message ${sent.messageId}: ${stateName(sent.state)} (sender ${sender}, relay ${target.address}, ${formatBytes(size)})`);
        }
        if (!isStructured(o.format))
          o.out(`message ${sent.messageId}: ${stateName(sent.state)} (sender ${sender}, relay ${target.address}, ${formatBytes(size)})`);
        const final = await waitForOutcome((id) => r.client.getMessage(id, r.call()), sent.messageId, {
          onState: (res) => {
            if (res.state !== sent.state && !isStructured(o.format))
              o.out(`message ${res.messageId}: ${stateName(res.state)}${res.lastError ? ` (${res.lastError})` : ''}`);
          },
        });
        if (!final) {
          if (isStructured(o.format)) printValue(o, protoJson(SendMailResponseSchema, sent));
          throw new CliError(`not SENT or FAILED after ${WAIT_DEFAULTS.timeoutMs / 1000} s; the relay keeps trying (relay send only stopped watching)`);
        }
        if (isStructured(o.format)) printMessage(o, GetMessageResponseSchema, final);
        else printTimeline(o, final);
        if (final.state === MessageState.FAILED || final.state === MessageState.BOUNCED) {
          throw new CliError(`${stateName(final.state)}: ${final.lastError || 'no reason given'}`);
        }
        if (target.stack?.captureDir && !isStructured(o.format)) {
          o.out(`The demo's capture server wrote it under ${relative(process.cwd(), target.stack.captureDir) || '.'}/`);
        }
      } catch (err) {
        const code = grpcCode(err);
        if (code === undefined) throw err;
        throw new CliError(describeSendError(err, ctx), exitCodeForStatus(code), { cause: err });
      }
    });
}

function tooLarge(bytes: number, what = 'the message is'): CliError {
  return new CliError(
    `${what} ${formatBytes(bytes)}, over the ${formatBytes(MAX_GRPC_MESSAGE_BYTES)} this command sends in one call ` +
      '(the relay takes at most 150 MiB per message, for Graph senders; 35 MiB by default); nothing was sent',
    EXIT.usage,
  );
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    throw new CliError(`--attach ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.usage, { cause: err });
  }
}
