import { useState } from 'preact/hooks';
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

/** Page sizes to choose from; ListMessages takes at most 1000. */
const PAGE_SIZES = [10, 50, 200] as const;

interface Filters {
  state: string;
  sender: string;
  recipient: string;
}

export function MessagesPage({ senders }: { senders: string[] }) {
  const [filters, setFilters] = useState<Filters>({ state: '', sender: senders[0] ?? '', recipient: '' });
  const [form, setForm] = useState<Filters>(filters);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [open, setOpen] = useState<string | undefined>(undefined);
  const [notice, setNotice] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const request = () => ({
    ...(filters.state ? { state: `MESSAGE_STATE_${filters.state}` } : {}),
    ...(filters.sender ? { sender: filters.sender } : {}),
    ...(filters.recipient ? { recipient: filters.recipient } : {}),
  });
  const [pageSize, setPageSize] = useState<number>(PAGE_SIZES[1]);
  // The page token of every page from the first to the one shown ('' is the first page).
  const [pages, setPages] = useState<string[]>(['']);
  const token = pages[pages.length - 1] ?? '';
  // Read again every 3 seconds, so a message's state changes on the page as it moves on.
  const list = useLoad(
    () => call<{ messages?: Summary[]; nextPageToken?: string }>('ListMessages', { ...request(), pageSize, ...(token ? { pageToken: token } : {}) }),
    [JSON.stringify(filters), pageSize, token],
    3_000,
  );
  const next = list.data?.nextPageToken;

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

  return (
    <section aria-labelledby="messages-title">
      <h1 id="messages-title">Messages</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters(form);
          setPages(['']);
        }}
      >
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
        <Field label="Sender" id="m-sender">
          {senders.length > 0 ? (
            <select id="m-sender" value={form.sender} onChange={(e) => setForm({ ...form, sender: e.currentTarget.value })}>
              {senders.map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
            </select>
          ) : (
            <input id="m-sender" value={form.sender} onInput={(e) => setForm({ ...form, sender: e.currentTarget.value })} />
          )}
        </Field>
        <Field label="Recipient" id="m-recipient">
          <input id="m-recipient" type="email" value={form.recipient} onInput={(e) => setForm({ ...form, recipient: e.currentTarget.value })} />
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
      </form>
      <ErrorNote error={list.error ?? error} />
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
            {(list.data?.messages ?? []).map((m) => (
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
                  {open === m.messageId ? <Timeline id={m.messageId} /> : null}
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

function Timeline({ id }: { id: string }) {
  const { data, error } = useLoad(
    () => call<{ history?: Array<{ state?: string; at?: string; detail?: string; attempt?: number }> }>('GetMessage', { messageId: id }),
    [id],
  );
  return (
    <div>
      <ErrorNote error={error} />
      <ol class="timeline" aria-label={`History of message ${id}`}>
        {(data?.history ?? []).map((h, i) => (
          <li key={`${h.at}-${i}`}>
            <strong>{stateName(h.state)}</strong> {when(h.at)}
            {h.attempt ? ` (attempt ${h.attempt})` : ''} {h.detail ? <div class="hint">{h.detail}</div> : null}
          </li>
        ))}
      </ol>
    </div>
  );
}
