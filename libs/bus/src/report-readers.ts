import { describe, InFlight } from '@relay/core';
import type { ReportClaims } from './report-claims.js';

/** What the readers need of a sender: its id and how often its feedback folder is read. */
export interface ReportingSender {
  id: string;
  feedback?: { intervalMs: number } | undefined;
}

/** Where reading a folder got to, kept between passes; `cursor` is the reader's own (JSON), undefined at first. */
export interface ReportPass<C> {
  cursor: C | undefined;
}

/** One sender's report folder, as a reader sees it on one pass. */
export interface ReportFolder<C = unknown> {
  /** The folder's identity across replicas and restarts (sender, server, folder). */
  key: string;
  /** For the log line of a failed pass (e.g. `{ host }` or `{ mailbox }`). */
  where: Record<string, string>;
  /** Reads the folder once from `pass.cursor`, moving `pass.cursor` on as it goes (kept even when the pass fails). */
  read(pass: ReportPass<C>): Promise<{ read: number }>;
}

export interface ReportReaders {
  stop(): Promise<void>;
}

interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ReportReaderOptions {
  /**
   * Shares the passes among replicas (see reportClaims): one replica reads a folder per interval
   * and the cursor it leaves is where the next starts. Without it, this process reads every
   * folder and keeps cursors in memory.
   */
  claims?: ReportClaims | undefined;
  /** How often senders are looked at for a due folder. */
  checkEveryMs?: number;
}

/**
 * Reads the delivery-report folder of every sender `folderOf` gives one for, each on its own
 * `feedback.intervalMs`, one pass per sender at a time. Senders are looked up on each check
 * (every `checkEveryMs`): a configuration change takes effect at the next one. A failed pass is
 * logged and tried again at the next interval.
 */
export function startReportReaders<S extends ReportingSender, C>(
  senders: () => Iterable<S>,
  folderOf: (s: S) => ReportFolder<C> | undefined,
  log: Log,
  options: ReportReaderOptions = {},
): ReportReaders {
  const { claims, checkEveryMs = 5_000 } = options;
  const due = new Map<string, number>();
  const busy = new Set<string>();
  const local = stateByKey<ReportPass<C>>(() => ({ cursor: undefined }));
  const running = new InFlight();
  let stopped = false;

  const pass = async (s: S & { feedback: { intervalMs: number } }, folder: ReportFolder<C>) => {
    let state = local(folder.key);
    let save: ((cursor: unknown) => Promise<void>) | undefined;
    if (claims) {
      const claim = await claims.take(folder.key, s.feedback.intervalMs);
      if ('busyUntil' in claim) {
        // Another replica has this pass; look again when it is due.
        due.set(s.id, claim.busyUntil);
        return;
      }
      state = { cursor: claim.cursor as C | undefined };
      save = claim.save;
    }
    try {
      const r = await folder.read(state);
      if (r.read > 0) log.info({ sender: s.id, ...r }, 'read delivery reports');
    } finally {
      await save?.(state.cursor).catch((err: unknown) => log.warn({ err: describe(err), sender: s.id }, 'could not keep where reading reports got to'));
    }
  };

  const tick = () => {
    if (stopped) return;
    const now = Date.now();
    for (const s of senders()) {
      if (!s.feedback || busy.has(s.id) || (due.get(s.id) ?? 0) > now) continue;
      const folder = folderOf(s);
      if (!folder) continue;
      due.set(s.id, now + s.feedback.intervalMs);
      busy.add(s.id);
      void running.run(async () => {
        try {
          await pass(s as S & { feedback: { intervalMs: number } }, folder);
        } catch (err) {
          log.warn({ err: describe(err), sender: s.id, ...folder.where }, 'could not read delivery reports; will try again');
        } finally {
          busy.delete(s.id);
        }
      });
    }
  };
  const timer = setInterval(tick, checkEveryMs);
  timer.unref();
  tick();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running.idle();
    },
  };
}

/** State kept per folder key across passes (a cursor, the ids seen), made on first use. */
export function stateByKey<T>(make: () => T): (key: string) => T {
  const states = new Map<string, T>();
  return (key) => {
    let s = states.get(key);
    if (s === undefined) states.set(key, (s = make()));
    return s;
  };
}
