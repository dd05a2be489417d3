import { useEffect, useRef, useState } from 'preact/hooks';
import { call } from '../api';
import { ErrorNote, Field, stateName, useLoad, when } from '../ui';
import type { QueueStats } from './queues';
import { authOf, type Spec, transportOf } from '../sender-text';
import { type Sender, SenderForm } from './senders';

/** GetSender's `credential`: facts about how the sender signs in, never a secret. */
export interface CredentialStatus {
  consentedBy?: string;
  consentedAt?: string;
  tokenRefreshedAt?: string;
  tokenExpiresAt?: string;
}

/** How often the gauges and the recent messages are read again. */
const REFRESH_MS = 5_000;
/** How long the page looks for a new consent after "Authenticate with MFA" (the sign-in link's life). */
const CONSENT_WAIT_MS = 10 * 60_000;
const CONSENT_POLL_MS = 2_000;

interface TestResult {
  ok?: boolean;
  /** warning: passed, but needs attention soon (a credential close to its expiry). */
  steps?: Array<{ name: string; ok?: boolean; warning?: boolean; detail?: string }>;
  remedy?: string;
}

export function SenderPage({ id, admin }: { id: string; admin: boolean }) {
  const { data, error, reload } = useLoad(() => call<{ sender: Sender; credential?: CredentialStatus }>('GetSender', { id }), [id]);
  const [editing, setEditing] = useState(false);
  const s = data?.sender;
  const spec = s?.spec as Spec | undefined;
  // Senders the mailbox signs in for: OAuth2 over SMTP with a refresh token, and delegated Graph.
  const oauth = (spec?.smtp?.auth?.type === 'oauth2' && spec.smtp.auth.flow === 'refresh_token') || spec?.graph?.flow === 'refresh_token';
  // Senders that sign in with access tokens: OAuth2 over SMTP, and Graph.
  const tokens = spec?.smtp?.auth?.type === 'oauth2' || spec?.transport === 'graph';
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
          <Gauges id={id} spec={spec} />
          <RecentMessages id={id} />
          <Secrets sender={s} onSaved={reload} />
          <TestPanel id={id} />
          {tokens ? <SignInPanel id={id} consent={oauth} credential={data?.credential} onConsented={reload} /> : null}
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
          <p class={result.ok ? 'ok-text' : 'error'}>
            {result.ok ? `All steps passed.${result.steps?.some((s) => s.warning) ? ' One needs attention soon.' : ''}` : 'The test failed.'}
          </p>
          <ol class="steps">
            {(result.steps ?? []).map((s) => (
              <li key={s.name} class={s.ok ? (s.warning ? 'warn' : 'ok') : 'bad'}>
                <strong>
                  {s.ok ? (s.warning ? '⚠' : '✓') : '✗'} {s.name}
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

/** Who consented and the token's times; for a refresh_token sender, the "Authenticate with MFA" button too. */
function SignInPanel(props: { id: string; consent: boolean; credential: CredentialStatus | undefined; onConsented: () => void }) {
  const { id, consent, credential: c } = props;
  const [url, setUrl] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [notice, setNotice] = useState('');
  const [waiting, setWaiting] = useState(false);
  // Set while the page is open: the look for a new consent stops when it closes.
  const alive = useRef(true);
  useEffect(
    () => () => {
      alive.current = false;
    },
    [],
  );
  /** Reads GetSender until its consent is newer than `before`: the sign-in window finished. */
  const watch = async (before: string) => {
    setWaiting(true);
    const until = Date.now() + CONSENT_WAIT_MS;
    try {
      while (alive.current && Date.now() < until) {
        await new Promise((r) => setTimeout(r, CONSENT_POLL_MS));
        const got = await call<{ credential?: CredentialStatus }>('GetSender', { id }).catch(() => undefined);
        const now = got?.credential;
        if (now?.consentedAt && now.consentedAt !== before) {
          if (!alive.current) return;
          setNotice(`Signed in as ${now.consentedBy} at ${when(now.consentedAt)}.`);
          props.onConsented();
          return;
        }
      }
    } finally {
      if (alive.current) setWaiting(false);
    }
  };
  const begin = async () => {
    setError(undefined);
    setNotice('');
    try {
      const r = await call<{ authorizeUrl: string }>('BeginConsent', { sender: id });
      setUrl(r.authorizeUrl);
      window.open(r.authorizeUrl, '_blank', 'noopener');
      // One look at a time: a second press reuses the first's.
      if (!waiting) void watch(c?.consentedAt ?? '');
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const expires = c?.tokenExpiresAt ? Date.parse(c.tokenExpiresAt) : Number.NaN;
  return (
    <section class="card" aria-labelledby="signin-title">
      <h2 id="signin-title">Mailbox sign-in</h2>
      <dl class="pairs">
        {consent ? (
          <>
            <dt>Consented by</dt>
            <dd>{c?.consentedBy ? `${c.consentedBy}, ${when(c.consentedAt)}` : c ? 'nobody yet' : 'unknown'}</dd>
          </>
        ) : null}
        <dt>Token last refreshed</dt>
        <dd>{c?.tokenRefreshedAt ? when(c.tokenRefreshedAt) : c ? 'not yet' : 'unknown'}</dd>
        <dt>Token expires</dt>
        <dd>
          {Number.isNaN(expires) ? '—' : `${when(c?.tokenExpiresAt)}${expires < Date.now() ? ' (expired; a new one is obtained for the next message)' : ''}`}
        </dd>
      </dl>
      {c ? null : <p class="hint">The credentials service did not answer; these facts are not known right now.</p>}
      {consent ? (
        <>
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
              ; it is valid for 10 minutes.{waiting ? ' This page shows the sign-in once it is done.' : ''}
            </p>
          ) : null}
          <p role="status">{notice}</p>
        </>
      ) : null}
    </section>
  );
}

type Stats = QueueStats & { sending?: string };

/** A labelled gauge: the meter carries its value in words for screen readers; the same words show beside it. */
function Gauge(props: { id: string; label: string; value: number; max: number; text: string; high?: number; optimum?: number }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <meter id={props.id} min={0} max={Math.max(props.max, 1)} value={props.value} high={props.high} optimum={props.optimum} aria-valuetext={props.text} />
      <span class="hint" aria-hidden="true">
        {props.text}
      </span>
    </div>
  );
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** The pace the sender's settings give (a preset by name, its batch and interval, its daily caps). */
function paceOf(spec: Spec | undefined): string {
  const rate = spec?.rate as Record<string, unknown> | undefined;
  if (!rate) return spec?.transport === 'graph' ? 'the microsoft365-graph preset' : 'unpaced';
  const parts: string[] = [];
  if (rate.preset) parts.push(`preset ${String(rate.preset)}`);
  if (rate.batch_size && rate.interval) parts.push(`${String(rate.batch_size)} messages every ${String(rate.interval)}`);
  if (rate.daily_messages) parts.push(`${String(rate.daily_messages)} messages a day`);
  if (rate.daily_recipients) parts.push(`${String(rate.daily_recipients)} recipients a day`);
  return parts.join('; ') || 'unpaced';
}

/** GetQueueStats for this sender as gauges: today's recipients against the cap, and the queue. */
function Gauges({ id, spec }: { id: string; spec: Spec | undefined }) {
  const { data, error } = useLoad(() => call<{ senders?: Stats[] }>('GetQueueStats', { sender: id }), [id], REFRESH_MS);
  const s = data?.senders?.find((x) => x.sender === id);
  const n = (v: string | undefined) => Number(v ?? 0);
  const today = n(s?.recipientsToday);
  const cap = n(s?.dailyRecipientCap);
  const [queued, held, retrying, sending, failed] = [n(s?.queued), n(s?.held), n(s?.retrying), n(s?.sending), n(s?.failed24h)];
  const total = queued + retrying + sending + failed;
  return (
    <section class="card" aria-labelledby="gauges-title">
      <h2 id="gauges-title">Pacing and daily cap</h2>
      <ErrorNote error={error} />
      {data ? (
        <>
          {cap > 0 ? (
            <Gauge
              id="g-today"
              label="Recipients today"
              value={today}
              max={cap}
              high={cap * 0.8}
              optimum={0}
              text={`${today} of ${cap} (${Math.round((today / cap) * 100)}%)`}
            />
          ) : (
            <p>Recipients today: {today} (no daily cap)</p>
          )}
          <dl class="pairs">
            <dt>Pace</dt>
            <dd>{paceOf(spec)}</dd>
            <dt>Next release</dt>
            <dd>{s?.nextReleaseAt ? when(s.nextReleaseAt) : held > 0 ? 'when there is room' : 'nothing held'}</dd>
            <dt>Oldest waiting</dt>
            <dd>{n(s?.oldestAgeSeconds) ? `${s?.oldestAgeSeconds} s` : '—'}</dd>
          </dl>
          <h3>Queue</h3>
          <Gauge id="g-queued" label="Queued" value={queued} max={total} text={plural(queued, 'message')} />
          <Gauge id="g-held" label="Held by pacing" value={held} max={total} text={plural(held, 'message')} />
          <Gauge id="g-retrying" label="Retrying" value={retrying} max={total} high={0.5} optimum={0} text={plural(retrying, 'message')} />
          <Gauge id="g-failed" label="Failed (24 h)" value={failed} max={total} high={0.5} optimum={0} text={plural(failed, 'message')} />
        </>
      ) : null}
    </section>
  );
}

interface Summary {
  messageId: string;
  state?: string;
  subject?: string;
  updatedAt?: string;
}

/** The sender's last 10 messages, each linking to its timeline. */
function RecentMessages({ id }: { id: string }) {
  const { data, error } = useLoad(() => call<{ messages?: Summary[] }>('ListMessages', { sender: id, pageSize: 10 }), [id], REFRESH_MS);
  const messages = data?.messages ?? [];
  return (
    <section class="card" aria-labelledby="recent-title">
      <h2 id="recent-title">Recent messages</h2>
      <ErrorNote error={error} />
      {data && messages.length === 0 ? <p>No messages yet.</p> : null}
      {messages.length > 0 ? (
        <div class="table-wrap">
          <table aria-labelledby="recent-title">
            <thead>
              <tr>
                <th scope="col">Subject</th>
                <th scope="col">State</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {messages.map((m) => (
                <tr key={m.messageId}>
                  <th scope="row">
                    <a href={`#/messages/${encodeURIComponent(m.messageId)}`}>{m.subject || m.messageId}</a>
                  </th>
                  <td>{stateName(m.state)}</td>
                  <td>{when(m.updatedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <p>
        <a href="#/messages">All messages</a>
      </p>
    </section>
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
