import { describe, InFlight } from '@relay/core';

/** One sender's report folder, as a reader sees it on one pass. */
/** What the readers need of a sender: its id and how often its feedback folder is read. */
export interface ReportingSender {
  id: string;
  feedback?: { intervalMs: number } | undefined;
}

export interface ReportFolder {
  /** For the log line of a failed pass (e.g. `{ host }` or `{ mailbox }`). */
  where: Record<string, string>;
  /** Reads the folder once. */
  read(): Promise<{ read: number }>;
}

export interface ReportReaders {
  stop(): Promise<void>;
}

interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * Reads the delivery-report folder of every sender `folderOf` gives one for, each on its own
 * `feedback.intervalMs`, one pass per sender at a time. Senders are looked up on each check
 * (every `checkEveryMs`): a configuration change takes effect at the next one. A failed pass is
 * logged and tried again at the next interval.
 */
export function startReportReaders<S extends ReportingSender>(
  senders: () => Iterable<S>,
  folderOf: (s: S) => ReportFolder | undefined,
  log: Log,
  checkEveryMs = 5_000,
): ReportReaders {
  const due = new Map<string, number>();
  const busy = new Set<string>();
  const running = new InFlight();
  let stopped = false;
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
          const r = await folder.read();
          if (r.read > 0) log.info({ sender: s.id, ...r }, 'read delivery reports');
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
