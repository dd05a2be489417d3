import { useEffect, useState } from 'preact/hooks';
import { call } from '../api';
import { followLive, type LiveMode } from '../live';
import { ErrorNote } from '../ui';

export interface QueueStats {
  sender: string;
  queued?: string;
  held?: string;
  retrying?: string;
  failed24h?: string;
  oldestAgeSeconds?: string;
  recipientsToday?: string;
  dailyRecipientCap?: string;
  nextReleaseAt?: string;
}

const byId = (res: { senders?: QueueStats[] }) => new Map((res.senders ?? []).map((s) => [s.sender, s]));

export async function loadStats(): Promise<Map<string, QueueStats>> {
  return byId(await call<{ senders?: QueueStats[] }>('GetQueueStats'));
}

/** Where the live figures come from: GetQueueStats as server-sent events, at once and after each change. */
export const QUEUE_EVENTS_URL = '/api/events/queues';
const POLL_MS = 3_000;

function modeText(mode: LiveMode, note: string | undefined): string {
  switch (mode) {
    case 'connecting':
      return 'Connecting to the live figures…';
    case 'live':
      return 'Live: the figures change as mail is sent.';
    case 'reconnecting':
      return `Reconnecting to the live figures…${note ? ` (${note})` : ''}`;
    case 'polling':
      return `Live figures unavailable: read again every ${POLL_MS / 1000} seconds.`;
  }
}

const time = (iso: string | undefined) => (iso ? new Date(iso).toLocaleTimeString() : '');

/** green, amber or red, and the words for it: colour is never the only signal. */
export function health(s: QueueStats | undefined): { colour: 'ok' | 'warn' | 'bad'; label: string } {
  if (!s) return { colour: 'warn', label: 'no figures' };
  if (Number(s.failed24h ?? 0) > 0) return { colour: 'bad', label: `${s.failed24h} failed in 24 h` };
  if (Number(s.retrying ?? 0) > 0) return { colour: 'warn', label: `${s.retrying} retrying` };
  if (Number(s.oldestAgeSeconds ?? 0) > 3600) return { colour: 'warn', label: 'mail waiting over an hour' };
  return { colour: 'ok', label: 'healthy' };
}

export function QueuesPage() {
  const [data, setData] = useState<{ stats: Map<string, QueueStats>; at: Date } | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [live, setLive] = useState<{ mode: LiveMode; note?: string }>({ mode: 'connecting' });
  // The stream (polling when it fails repeatedly), for as long as the page is open.
  useEffect(
    () =>
      followLive({
        url: QUEUE_EVENTS_URL,
        connect: (url) => new EventSource(url),
        parse: (text) => byId(JSON.parse(text) as { senders?: QueueStats[] }),
        poll: loadStats,
        onData: (stats) => setData({ stats, at: new Date() }),
        onError: setError,
        onMode: (mode, note) => setLive({ mode, note }),
        pollMs: POLL_MS,
      }),
    [],
  );
  const rows = [...(data?.stats.values() ?? [])];
  return (
    <section aria-labelledby="queues-title">
      <h1 id="queues-title">Queues</h1>
      <p class="hint">
        <span class={`health ${live.mode === 'live' ? 'ok' : 'warn'}`} aria-live="polite">
          {modeText(live.mode, live.note)}
        </span>{' '}
        {data ? `Figures of ${data.at.toLocaleTimeString()}.` : ''}
      </p>
      <ErrorNote error={error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Sender</th>
              <th scope="col">Queued</th>
              <th scope="col">Held</th>
              <th scope="col">Next release</th>
              <th scope="col">Retrying</th>
              <th scope="col">Failed (24 h)</th>
              <th scope="col">Oldest waiting</th>
              <th scope="col">Recipients today</th>
              <th scope="col">Health</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => {
              const h = health(s);
              return (
                <tr key={s.sender}>
                  <th scope="row">
                    <a href={`#/senders/${encodeURIComponent(s.sender)}`}>{s.sender}</a>
                  </th>
                  <td>{s.queued ?? 0}</td>
                  <td>{s.held ?? 0}</td>
                  <td>{Number(s.held ?? 0) && s.nextReleaseAt ? time(s.nextReleaseAt) : '—'}</td>
                  <td>{s.retrying ?? 0}</td>
                  <td>{s.failed24h ?? 0}</td>
                  <td>{Number(s.oldestAgeSeconds ?? 0) ? `${s.oldestAgeSeconds} s` : '—'}</td>
                  <td>
                    {s.recipientsToday ?? 0}
                    {Number(s.dailyRecipientCap ?? 0) ? ` / ${s.dailyRecipientCap}` : ''}
                  </td>
                  <td>
                    <span class={`health ${h.colour}`}>{h.label}</span>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
