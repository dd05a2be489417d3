import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

/** CPU time (user + system) a process has used so far, from /proc (Linux); undefined elsewhere. */
export function cpuMs(pid: number | undefined): number | undefined {
  if (!pid || pid < 0) return undefined;
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The pid of the local process listening on the NATS port (to count the broker's CPU too), if any. */
export function pidListening(url: string): number | undefined {
  const port = Number(new URL(url.replace(/^nats:/, 'http:')).port || 4222);
  const out = spawnSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' }).stdout ?? '';
  const m = /pid=(\d+)/.exec(out);
  return m ? Number(m[1]) : undefined;
}

/** Read and write system calls a process has made so far, from /proc (Linux); undefined elsewhere. */
export function syscalls(pid: number | undefined): { reads: number; writes: number } | undefined {
  if (!pid || pid < 0) return undefined;
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1]);
    return { reads: field('syscr'), writes: field('syscw') };
  } catch {
    return undefined;
  }
}
