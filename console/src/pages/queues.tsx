import { call } from '../api';
import { ErrorNote, useLoad } from '../ui';

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

export async function loadStats(): Promise<Map<string, QueueStats>> {
  const res = await call<{ senders?: QueueStats[] }>('GetQueueStats');
  return new Map((res.senders ?? []).map((s) => [s.sender, s]));
}

/** green, amber or red, and the words for it: colour is never the only signal. */
export function health(s: QueueStats | undefined): { colour: 'ok' | 'warn' | 'bad'; label: string } {
  if (!s) return { colour: 'warn', label: 'no figures' };
  if (Number(s.failed24h ?? 0) > 0) return { colour: 'bad', label: `${s.failed24h} failed in 24 h` };
  if (Number(s.retrying ?? 0) > 0) return { colour: 'warn', label: `${s.retrying} retrying` };
  if (Number(s.oldestAgeSeconds ?? 0) > 3600) return { colour: 'warn', label: 'mail waiting over an hour' };
  return { colour: 'ok', label: 'healthy' };
}

export function QueuesPage() {
  // Live: the figures are read again every 3 seconds.
  const { data, error } = useLoad(loadStats, [], 3_000);
  const rows = [...(data?.values() ?? [])];
  return (
    <section aria-labelledby="queues-title">
      <h1 id="queues-title">Queues</h1>
      <p class="hint" aria-live="polite">
        Updated every 3 seconds{data ? `; last at ${new Date().toLocaleTimeString()}` : ''}.
      </p>
      <ErrorNote error={error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Sender</th>
              <th scope="col">Queued</th>
              <th scope="col">Held</th>
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
