import { fstatSync } from 'node:fs';
import { EXIT_WITH_PARENT_ENV } from './parent.js';

/** Named defaults, with units. */
export const PARENT_WATCH_DEFAULTS = {
  /** How often the parent's process id is compared, for a parent whose pipe did not close. */
  pollMs: 1_000,
} as const;

/**
 * With RELAY_EXIT_WITH_PARENT=1, calls `onGone` once when the process that started this one is
 * gone, whatever killed it (SIGKILL included). Node has no PR_SET_PDEATHSIG, and the stack's
 * services run in process groups of their own, so nothing else tells them: the supervisor's end of
 * our stdin closes when it dies, and should something else hold that end, we are re-parented and
 * our parent's process id changes. Neither keeps the process alive. Returns a function that stops
 * watching.
 */
export function watchParent(proc: NodeJS.Process, onGone: () => void, pollMs: number = PARENT_WATCH_DEFAULTS.pollMs): () => void {
  if (proc.env[EXIT_WITH_PARENT_ENV] !== '1') return () => {};
  let fired = false;
  const gone = () => {
    if (fired) return;
    fired = true;
    clearInterval(timer);
    onGone();
  };
  const firstParent = proc.ppid;
  const timer = setInterval(() => {
    if (proc.ppid !== firstParent) gone();
  }, pollMs).unref();

  // Only a pipe (or socket) closes when the parent dies: /dev/null or a file would end at once.
  const stdin = stdinIsPipe() ? proc.stdin : undefined;
  if (stdin) {
    stdin.on('end', gone).on('close', gone).on('error', gone);
    stdin.resume();
    (stdin as { unref?: () => void }).unref?.();
  }
  return () => {
    fired = true;
    clearInterval(timer);
  };
}

function stdinIsPipe(): boolean {
  try {
    const st = fstatSync(0);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}
