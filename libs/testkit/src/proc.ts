import { readFileSync } from 'node:fs';

/** The process' state letter from /proc (Z: exited, not yet reaped), or undefined once it is gone. */
export function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/** Whether `pid` still runs: an exited process its new parent has not reaped yet does not. */
export function procRunning(pid: number): boolean {
  const s = procState(pid);
  return s !== undefined && s !== 'Z';
}

/** `pid 123 (S): node … services/ingest/dist/main.js`, to say which process is left. */
export function describeProc(pid: number): string {
  let cmdline = '?';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    // gone meanwhile
  }
  return `pid ${pid} (${procState(pid) ?? 'gone'}): ${cmdline}`;
}

/**
 * Resolves once none of `pids` runs; rejects after `timeoutMs` naming each one still running with
 * its command line. `after` says since when they should have exited, for the message.
 */
export async function processesExited(pids: readonly number[], timeoutMs: number, after = 'its parent died'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (pids.some(procRunning)) {
    if (Date.now() > until) throw new Error(`still running ${timeoutMs} ms after ${after}:\n${pids.filter(procRunning).map(describeProc).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
