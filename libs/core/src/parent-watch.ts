import { fstatSync } from 'node:fs';
import { EXIT_WITH_PARENT_ENV, PARENT_PID_ENV } from './parent.js';

/** Named defaults, with units. */
export const PARENT_WATCH_DEFAULTS = {
  /** How often the parent's process id is compared, for a parent whose pipe did not close. */
  pollMs: 1_000,
} as const;

let whileStarting: (() => void) | undefined;

/**
 * With RELAY_EXIT_WITH_PARENT=1, calls `onGone` once when the process that started this one is
 * gone, whatever killed it (SIGKILL included). Node has no PR_SET_PDEATHSIG, and the stack's
 * services run in process groups of their own, so nothing else tells them: the supervisor's end of
 * our stdin closes when it dies, and should something else hold that end (or stdin be no pipe), we
 * are re-parented and our parent's process id is no longer the one in RELAY_PARENT_PID. Neither
 * keeps the process alive. Replaces the watch of exitWithParentWhileStarting. Returns a function
 * that stops watching.
 */
export function watchParent(proc: NodeJS.Process, onGone: () => void, pollMs: number = PARENT_WATCH_DEFAULTS.pollMs): () => void {
  whileStarting?.();
  whileStarting = undefined;
  return watch(proc, onGone, pollMs);
}

/**
 * Until the service installs its own watchParent: a parent that dies while the service is still
 * starting (connecting, reading its configuration) ends it at once, as nothing is in flight yet.
 * Called by the telemetry module, which every service loads first.
 */
export function exitWithParentWhileStarting(proc: NodeJS.Process, pollMs: number = PARENT_WATCH_DEFAULTS.pollMs): void {
  whileStarting?.();
  whileStarting = watch(proc, () => proc.exit(1), pollMs);
}

function watch(proc: NodeJS.Process, onGone: () => void, pollMs: number): () => void {
  if (proc.env[EXIT_WITH_PARENT_ENV] !== '1') return () => {};
  let fired = false;
  const stdin = stdinIsPipe() ? proc.stdin : undefined;
  const stop = () => {
    fired = true;
    clearInterval(timer);
    stdin?.off('end', gone).off('close', gone).off('error', gone);
  };
  function gone() {
    if (fired) return;
    stop();
    onGone();
  }
  // The supervisor's own pid when it says so: the parent may be gone before this runs.
  const parent = Number(proc.env[PARENT_PID_ENV]) || proc.ppid;
  const timer = setInterval(() => {
    if (proc.ppid !== parent) gone();
  }, pollMs).unref();
  if (proc.ppid !== parent) setImmediate(gone);

  // Only a pipe (or socket) closes when the parent dies: /dev/null or a file would end at once.
  if (stdin) {
    stdin.on('end', gone).on('close', gone).on('error', gone);
    stdin.resume();
    (stdin as { unref?: () => void }).unref?.();
  }
  return stop;
}

function stdinIsPipe(): boolean {
  try {
    const st = fstatSync(0);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}
