/** `npm run send`: hands one message to the relay, and with --wait follows it until it is delivered. */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRelayClient } from '@relay/client';
import { MessageState } from '@relay/proto';
import { buildRequest, isUsageError, parseSendArgs, resolveTarget, SEND_USAGE, type AttachmentFile } from './args.js';
import { describeSendError, formatHistory, stateName, waitForOutcome, WAIT_DEFAULTS } from './flow.js';
import { readStackFile } from '../stack/stack-file.js';

/** SendMail answers once the message is stored; longer than this means something is wrong. */
const SEND_DEADLINE_MS = 30_000;

async function main(): Promise<number> {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  let args;
  let target;
  let files: AttachmentFile[];
  try {
    args = parseSendArgs(process.argv.slice(2));
    if (args.help) {
      console.log(SEND_USAGE);
      return 0;
    }
    target = resolveTarget(args, process.env, readStackFile(root));
    files = await Promise.all(
      args.attach.map(async (path) => {
        try {
          return { path, content: await readFile(path) };
        } catch (err) {
          throw new Error(`--attach ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        }
      }),
    );
  } catch (err) {
    console.error(`send: ${(err as Error).message}`);
    if (!isUsageError(err)) return 1;
    console.error(`\n${SEND_USAGE}`);
    return 2;
  }

  const client = createRelayClient({
    address: target.address,
    apiKey: target.apiKey,
    ...(target.tlsCaFile ? { tls: { ca: readFileSync(target.tlsCaFile, 'utf8') } } : {}),
  });
  const ctx = { address: target.address, sender: target.sender, apiKeySet: Boolean(target.apiKey) };
  try {
    const sent = await client.sendMail(buildRequest(args, target.sender, files), { deadlineMs: SEND_DEADLINE_MS });
    console.log(`message ${sent.messageId}: ${stateName(sent.state)} (sender ${target.sender}, relay ${target.address})`);
    if (!args.wait) return 0;

    const final = await waitForOutcome((id) => client.getMessage(id, { deadlineMs: 10_000 }), sent.messageId, {
      onState: (res) => {
        if (res.state !== sent.state) console.log(`message ${res.messageId}: ${stateName(res.state)}${res.lastError ? ` (${res.lastError})` : ''}`);
      },
    });
    if (!final) {
      console.error(`send: not SENT or FAILED after ${WAIT_DEFAULTS.timeoutMs / 1000} s; the relay keeps trying (npm run send only stopped watching)`);
      return 1;
    }
    console.log(`history (${final.attempts} attempt${final.attempts === 1 ? '' : 's'}):`);
    for (const line of formatHistory(final)) console.log(line);
    if (final.state === MessageState.FAILED) {
      console.error(`send: FAILED: ${final.lastError || 'no reason given'}`);
      return 1;
    }
    if (target.captureDir) console.log(`The demo's capture server wrote it under ${relative(process.cwd(), target.captureDir) || '.'}/`);
    return 0;
  } catch (err) {
    console.error(`send: ${describeSendError(err, ctx)}`);
    return 1;
  } finally {
    client.close();
  }
}

process.exitCode = await main();
