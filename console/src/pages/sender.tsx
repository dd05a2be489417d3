import { useState } from 'preact/hooks';
import { call } from '../api';
import { ErrorNote, Field, useLoad, when } from '../ui';
import { authOf, type Sender, SenderForm, type Spec, transportOf } from './senders';

interface TestResult {
  ok?: boolean;
  steps?: Array<{ name: string; ok?: boolean; detail?: string }>;
  remedy?: string;
}

export function SenderPage({ id, admin }: { id: string; admin: boolean }) {
  const { data, error, reload } = useLoad(() => call<{ sender: Sender }>('GetSender', { id }), [id]);
  const [editing, setEditing] = useState(false);
  const s = data?.sender;
  const spec = s?.spec as Spec | undefined;
  const oauth = spec?.smtp?.auth?.type === 'oauth2' && spec.smtp.auth.flow === 'refresh_token';
  return (
    <section aria-labelledby="sender-title">
      <p>
        <a href="#/senders">← Senders</a>
      </p>
      <h1 id="sender-title">Sender {id}</h1>
      <ErrorNote error={error} />
      {s ? (
        <>
          <dl class="facts">
            <dt>From</dt>
            <dd>{String(spec?.from ?? '')}</dd>
            <dt>Transport</dt>
            <dd>{transportOf(spec)}</dd>
            <dt>Auth</dt>
            <dd>{authOf(spec)}</dd>
            <dt>Managed by</dt>
            <dd>{s.managedBy === 'file' ? 'relay.yaml (change it there)' : 'the console and API'}</dd>
            <dt>Owners</dt>
            <dd>{(s.owners ?? []).join(', ') || 'none'}</dd>
            <dt>Last change</dt>
            <dd>{s.updatedBy ? `${when(s.updatedAt)} by ${s.updatedBy}` : '—'}</dd>
          </dl>
          {s.managedBy !== 'file' ? (
            <p>
              <button type="button" onClick={() => setEditing(!editing)} aria-expanded={editing}>
                {editing ? 'Close the form' : 'Edit settings'}
              </button>
            </p>
          ) : null}
          {editing ? (
            <SenderForm
              sender={s}
              onSaved={() => {
                setEditing(false);
                reload();
              }}
            />
          ) : null}
          <Secrets sender={s} onSaved={reload} />
          <TestPanel id={id} />
          {oauth ? <ConsentPanel id={id} /> : null}
          {admin && s.managedBy !== 'file' ? <DeletePanel sender={s} /> : null}
        </>
      ) : null}
    </section>
  );
}

function Secrets({ sender, onSaved }: { sender: Sender; onSaved: () => void }) {
  const fields = sender.secrets ?? [];
  const [field, setField] = useState(fields[0]?.field ?? '');
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [done, setDone] = useState('');
  if (fields.length === 0) return null;
  const save = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setDone('');
    try {
      await call('SetSenderSecret', { id: sender.id, field, value });
      setValue('');
      setDone(`${field} saved.`);
      onSaved();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <div class="card">
      <h2>Secrets</h2>
      <ul>
        {fields.map((f) => (
          <li key={f.field}>
            <code>{f.field}</code>: {f.set ? `set${f.setAt ? ` ${when(f.setAt)}` : ''}${f.setBy ? ` by ${f.setBy}` : ''}` : 'not set'}
          </li>
        ))}
      </ul>
      {sender.managedBy === 'file' ? (
        <p class="hint">This sender's secrets come from relay.yaml.</p>
      ) : (
        <form onSubmit={save}>
          <Field label="Secret" id="s-field">
            <select id="s-field" value={field} onChange={(e) => setField(e.currentTarget.value)}>
              {fields.map((f) => (
                <option key={f.field} value={f.field}>
                  {f.field}
                </option>
              ))}
            </select>
          </Field>
          <Field label="New value" id="s-value" hint="Stored encrypted; it is never shown again.">
            <input id="s-value" type="password" autocomplete="new-password" value={value} onInput={(e) => setValue(e.currentTarget.value)} required />
          </Field>
          <ErrorNote error={error} />
          {done ? <p role="status">{done}</p> : null}
          <button type="submit">Set or rotate secret</button>
        </form>
      )}
    </div>
  );
}

function TestPanel({ id }: { id: string }) {
  const [to, setTo] = useState('');
  const [result, setResult] = useState<TestResult | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const run = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    setResult(undefined);
    try {
      setResult(await call<TestResult>('TestSender', { sender: id, to }));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={run} aria-labelledby="test-title">
      <h2 id="test-title">Test</h2>
      <Field label="Send a test message to (optional)" id="t-to" hint="Empty: connect and sign in only.">
        <input id="t-to" type="email" value={to} onInput={(e) => setTo(e.currentTarget.value)} aria-describedby="t-to-hint" />
      </Field>
      <button type="submit" disabled={busy}>
        {busy ? 'Testing…' : 'Test'}
      </button>
      <ErrorNote error={error} />
      {result ? (
        <div aria-live="polite">
          <p class={result.ok ? 'ok-text' : 'error'}>{result.ok ? 'All steps passed.' : 'The test failed.'}</p>
          <ol class="steps">
            {(result.steps ?? []).map((s) => (
              <li key={s.name} class={s.ok ? 'ok' : 'bad'}>
                <strong>
                  {s.ok ? '✓' : '✗'} {s.name}
                </strong>{' '}
                {s.detail}
              </li>
            ))}
          </ol>
          {result.remedy ? (
            <p>
              <strong>What to do:</strong> {result.remedy}
            </p>
          ) : null}
        </div>
      ) : null}
    </form>
  );
}

function ConsentPanel({ id }: { id: string }) {
  const [url, setUrl] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const begin = async () => {
    setError(undefined);
    try {
      const r = await call<{ authorizeUrl: string }>('BeginConsent', { sender: id });
      setUrl(r.authorizeUrl);
      window.open(r.authorizeUrl, '_blank', 'noopener');
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <div class="card">
      <h2>Mailbox sign-in</h2>
      <p>Sign in as the sender's mailbox (with MFA) so the relay may send as it.</p>
      <button type="button" onClick={begin}>
        Authenticate with MFA
      </button>
      <ErrorNote error={error} />
      {url ? (
        <p>
          If no window opened,{' '}
          <a href={url} target="_blank" rel="noopener noreferrer">
            open the sign-in page
          </a>
          ; it is valid for 10 minutes.
        </p>
      ) : null}
    </div>
  );
}

function DeletePanel({ sender }: { sender: Sender }) {
  const [error, setError] = useState<string | undefined>(undefined);
  const remove = async () => {
    if (!confirm(`Delete sender ${sender.id}? Its secrets and sign-in are deleted too.`)) return;
    try {
      await call('DeleteSender', { id: sender.id, etag: sender.etag ?? '' });
      location.hash = '#/senders';
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <div class="card">
      <h2>Delete</h2>
      <button type="button" class="danger" onClick={remove}>
        Delete sender
      </button>
      <ErrorNote error={error} />
    </div>
  );
}
