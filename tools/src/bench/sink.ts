import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { portFree } from '../stack/services.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export async function freePort(): Promise<number> {
  for (let p = 20_000 + Math.floor(Math.random() * 20_000); ; p++) if (await portFree(p)) return p;
}

/**
 * Postfix's smtp-sink when installed (what the Postfix anchor counts at), else a Node sink. Both
 * print a running count (`mesg=N`) on stdout each time a message has been received in full ("."):
 * that is what "delivered" counts, the same way as the anchor, with no subscriber of our own on the
 * broker adding to the load.
 */
export function startSink(port: number) {
  const postfixSink = '/usr/sbin/smtp-sink';
  const proc = existsSync(postfixSink)
    ? spawn(postfixSink, ['-c', '-u', 'nobody', `127.0.0.1:${port}`, '256'], { stdio: ['ignore', 'pipe', 'ignore'] })
    : spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { SMTPServer } from 'smtp-server'; let n = 0;
    new SMTPServer({ authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
      onData(s, _x, cb) { s.resume(); s.on('end', () => { process.stdout.write('mesg=' + ++n + '\\r'); cb(null, 'ok'); }); } }).listen(${port}, '127.0.0.1');`,
        ],
        { cwd: join(root, 'tools'), stdio: ['ignore', 'pipe', 'ignore'] },
      );
  let received = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  let rest = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\r');
    rest = parts.pop() ?? '';
    const last = parts.length ? /mesg=(\d+)/.exec(parts.at(-1)!) : null;
    if (!last) return;
    received = Number(last[1]);
    for (const w of waiters.filter((x) => received >= x.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  return {
    kind: existsSync(postfixSink) ? 'postfix smtp-sink' : 'node smtp-server sink',
    proc,
    received: () => received,
    /** Resolves once the sink has received `n` messages in all. */
    reaches: (n: number) => new Promise<void>((r) => (received >= n ? r() : waiters.push({ n, resolve: r }))),
  };
}
