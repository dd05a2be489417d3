import { useEffect, useState } from 'preact/hooks';
import { call } from '../api';
import { ErrorNote, Field, STATES, stateName, useLoad, when } from '../ui';

interface Summary {
  messageId: string;
  state?: string;
  sender?: string;
  client?: string;
  subject?: string;
  to?: string[];
  attempts?: number;
  lastError?: string;
  updatedAt?: string;
}

interface StateChange {
  state?: string;
  at?: string;
  detail?: string;
  remedy?: string;
  attempt?: number;
}

/** Page sizes to choose from; ListMessages takes at most 1000. */
const PAGE_SIZES = [10, 50, 200] as const;
/** Longest subject filter ListMessages takes. */
const SUBJECT_MAX = 200;

/** A search, as the URL hash carries it (`#/messages?subject=…&from=…`): from and to are ISO times. */
interface Filters {
  recipient: string;
  subject: string;
  sender: string;
  state: string;
  from: string;
  to: string;
}

const KEYS = ['recipient', 'subject', 'sender', 'state', 'from', 'to'] as const;

/** The part of a hash after "?" (the search), or ''. */
function queryOf(hash: string): string {
  const i = hash.indexOf('?');
  return i < 0 ? '' : hash.slice(i + 1);
}

/** The search in the URL hash, followed as it changes (a pasted link, back and forward). */
function useHashQuery(): string {
  const [query, setQuery] = useState(() => queryOf(location.hash));
  useEffect(() => {
    const on = () => setQuery(queryOf(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return query;
}

const isoOrEmpty = (v: string | null) => (v && !Number.isNaN(new Date(v).getTime()) ? new Date(v).toISOString() : '');

export function parseFilters(query: string, senders: string[]): Filters {
  const q = new URLSearchParams(query);
  const state = (q.get('state') ?? '').toUpperCase();
  return {
    recipient: q.get('recipient') ?? '',
    subject: (q.get('subject') ?? '').slice(0, SUBJECT_MAX),
    // An owner always searches one of their senders.
    sender: q.get('sender') ?? senders[0] ?? '',
    state: (STATES as readonly string[]).includes(state) ? state : '',
    from: isoOrEmpty(q.get('from')),
    to: isoOrEmpty(q.get('to')),
  };
}

function hashOf(f: Filters): string {
  const q = new URLSearchParams();
  for (const k of KEYS) if (f[k].trim()) q.set(k, f[k].trim());
  const s = q.toString();
  return s ? `#/messages?${s}` : '#/messages';
}

/** An ISO time as a datetime-local input shows it (local time, to the minute). */
function toLocalInput(iso: string): string {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

/** A datetime-local input's value (local time) as an ISO time. */
function fromLocalInput(v: string): string {
  const d = new Date(v);
  return v && !Number.isNaN(d.getTime()) ? d.toISOString() : '';
}

/** The form holds the times as typed (local); the search, as ISO times. */
const toForm = (f: Filters): Filters => ({ ...f, from: toLocalInput(f.from), to: toLocalInput(f.to) });

export function MessagesPage({ senders, traceUrlTemplate }: { senders: string[]; traceUrlTemplate?: string }) {
  const query = useHashQuery();
  const filters = parseFilters(query, senders);
  const [form, setForm] = useState<Filters>(() => toForm(filters));
  const [formError, setFormError] = useState<string | undefined>(undefined);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [open, setOpen] = useState<string | undefined>(undefined);
  const [notice, setNotice] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [pageSize, setPageSize] = useState<number>(PAGE_SIZES[1]);
  // The page token of every page from the first to the one shown ('' is the first page).
  const [pages, setPages] = useState<string[]>(['']);
  const token = pages[pages.length - 1] ?? '';
  // A new search (typed, or a link opened) starts on its first page with nothing selected.
  useEffect(() => {
    setForm(toForm(parseFilters(query, senders)));
    setPages(['']);
    setSelected(new Set());
  }, [query]);
  const request = () => ({
    ...(filters.state ? { state: `MESSAGE_STATE_${filters.state}` } : {}),
    ...(filters.sender ? { sender: filters.sender } : {}),
    ...(filters.recipient ? { recipient: filters.recipient } : {}),
    ...(filters.subject ? { subject: filters.subject } : {}),
    ...(filters.from ? { since: filters.from } : {}),
    ...(filters.to ? { until: filters.to } : {}),
  });
  // Read again every 3 seconds, so a message's state changes on the page as it moves on.
  const list = useLoad(
    () => call<{ messages?: Summary[]; nextPageToken?: string }>('ListMessages', { ...request(), pageSize, ...(token ? { pageToken: token } : {}) }),
    [query, pageSize, token],
    3_000,
  );
  const next = list.data?.nextPageToken;
  const rows = list.data?.messages ?? [];

  const search = (e: Event) => {
    e.preventDefault();
    const f = { ...form, from: fromLocalInput(form.from), to: fromLocalInput(form.to) };
    if (f.from && f.to && f.from >= f.to) {
      setFormError('To: must be later than From');
      return;
    }
    setFormError(undefined);
    const hash = hashOf(f);
    if (hash === location.hash) list.reload();
    else location.hash = hash;
  };
  const act = async (method: 'RetryMessages' | 'CancelMessages') => {
    const ids = [...selected];
    const verb = method === 'RetryMessages' ? 'Send again' : 'Cancel';
    if (ids.length === 0 || !confirm(`${verb} ${ids.length} message${ids.length === 1 ? '' : 's'}?`)) return;
    setError(undefined);
    try {
      const r = await call<{ count?: number }>(method, { messageIds: ids });
      setNotice(`${verb}: ${r.count ?? 0} message(s).`);
      setSelected(new Set());
      list.reload();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };
  const text = (key: 'recipient' | 'subject' | 'sender') => (e: Event) => setForm({ ...form, [key]: (e.currentTarget as HTMLInputElement).value });

  return (
    <section aria-labelledby="messages-title">
      <h1 id="messages-title">Messages</h1>
      <search aria-label="Search messages">
        <form class="filters" onSubmit={search}>
          <Field label="Recipient" id="m-recipient">
            <input id="m-recipient" type="email" maxLength={254} value={form.recipient} onInput={text('recipient')} />
          </Field>
          <Field label="Subject" id="m-subject">
            <input id="m-subject" maxLength={SUBJECT_MAX} value={form.subject} onInput={text('subject')} />
          </Field>
          <Field label="Sender" id="m-sender">
            {senders.length > 0 ? (
              <select id="m-sender" value={form.sender} onChange={text('sender')}>
                {senders.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            ) : (
              <input id="m-sender" value={form.sender} onInput={text('sender')} />
            )}
          </Field>
          <Field label="State" id="m-state">
            <select id="m-state" value={form.state} onChange={(e) => setForm({ ...form, state: e.currentTarget.value })}>
              <option value="">Any</option>
              {STATES.map((s) => (
                <option key={s} value={s}>
                  {s.toLowerCase()}
                </option>
              ))}
            </select>
          </Field>
          <Field label="From" id="m-from">
            <input
              id="m-from"
              type="datetime-local"
              aria-describedby="m-time-hint"
              value={form.from}
              onInput={(e) => setForm({ ...form, from: e.currentTarget.value })}
            />
          </Field>
          <Field label="To" id="m-to">
            <input
              id="m-to"
              type="datetime-local"
              aria-describedby="m-time-hint"
              value={form.to}
              onInput={(e) => setForm({ ...form, to: e.currentTarget.value })}
            />
          </Field>
          <Field label="Per page" id="m-size">
            <select
              id="m-size"
              value={String(pageSize)}
              onChange={(e) => {
                setPageSize(Number(e.currentTarget.value));
                setPages(['']);
              }}
            >
              {PAGE_SIZES.map((n) => (
                <option key={n} value={String(n)}>
                  {n}
                </option>
              ))}
            </select>
          </Field>
          <button type="submit">Search</button>
          <small id="m-time-hint" class="hint wide">
            From and To bound the time of each message's latest state change, in your local time. The search is in the page's address: copy it to share it.
          </small>
        </form>
      </search>
      <ErrorNote error={formError ?? list.error ?? error} />
      {notice ? <p role="status">{notice}</p> : null}
      <p>
        <button type="button" disabled={selected.size === 0} onClick={() => act('RetryMessages')}>
          Send again
        </button>{' '}
        <button type="button" class="danger" disabled={selected.size === 0} onClick={() => act('CancelMessages')}>
          Cancel
        </button>
      </p>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">
                <span class="sr-only">Select</span>
              </th>
              <th scope="col">Message</th>
              <th scope="col">State</th>
              <th scope="col">Sender</th>
              <th scope="col">To</th>
              <th scope="col">Attempts</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((m) => (
              <tr key={m.messageId}>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Select message ${m.messageId}`}
                    checked={selected.has(m.messageId)}
                    onChange={() => toggle(m.messageId)}
                  />
                </td>
                <th scope="row">
                  <button
                    type="button"
                    class="link"
                    onClick={() => setOpen(open === m.messageId ? undefined : m.messageId)}
                    aria-expanded={open === m.messageId}
                  >
                    {m.subject || m.messageId}
                  </button>
                  {open === m.messageId ? <Timeline id={m.messageId} traceUrlTemplate={traceUrlTemplate} /> : null}
                </th>
                <td>
                  {stateName(m.state)}
                  {m.lastError ? <div class="hint">{m.lastError}</div> : null}
                </td>
                <td>{m.sender}</td>
                <td>{(m.to ?? []).join(', ')}</td>
                <td>{m.attempts ?? 0}</td>
                <td>{when(m.updatedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {list.data && rows.length === 0 ? <p>No messages match this search.</p> : null}
      <nav class="pager" aria-label="Pages of messages">
        <button type="button" disabled={pages.length === 1} onClick={() => setPages(pages.slice(0, -1))}>
          Previous page
        </button>{' '}
        <span>Page {pages.length}</span>{' '}
        <button type="button" disabled={!next} onClick={() => next && setPages([...pages, next])}>
          Next page
        </button>
      </nav>
    </section>
  );
}

/** The link to a trace in the tracing UI: the template with the trace id in place of {trace_id}. */
export function traceLink(template: string | undefined, traceId: string | undefined): string | undefined {
  if (!template || !traceId || !/^[0-9a-f]{32}$/.test(traceId)) return undefined;
  const url = template.replaceAll('{trace_id}', traceId);
  return /^https?:\/\//i.test(url) ? url : undefined;
}

function Timeline({ id, traceUrlTemplate }: { id: string; traceUrlTemplate?: string }) {
  const { data, error } = useLoad(() => call<{ history?: StateChange[]; traceId?: string }>('GetMessage', { messageId: id }), [id]);
  const trace = traceLink(traceUrlTemplate, data?.traceId);
  return (
    <div>
      <ErrorNote error={error} />
      <ol class="timeline" aria-label={`History of message ${id}`}>
        {(data?.history ?? []).map((h, i) => (
          <li key={`${h.at}-${i}`}>
            <strong>{stateName(h.state)}</strong> {when(h.at)}
            {h.attempt ? ` (attempt ${h.attempt})` : ''}
            {h.detail ? <div class="detail">{h.detail}</div> : null}
            {h.remedy ? (
              <div class="remedy">
                <strong>What to do:</strong> {h.remedy}
              </div>
            ) : null}
          </li>
        ))}
      </ol>
      {trace ? (
        <p>
          <a href={trace} target="_blank" rel="noopener noreferrer">
            View trace<span class="sr-only"> of message {id} (opens in a new tab)</span>
          </a>
        </p>
      ) : data?.traceId ? (
        <p class="hint">
          Trace <code>{data.traceId}</code>
        </p>
      ) : null}
    </div>
  );
}
