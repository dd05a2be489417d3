import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, call } from '../api';
import { authOf, type Spec, transportOf } from '../sender-text';
import { ErrorNote, useLoad } from '../ui';
import { health, loadStats } from './queues';

export interface Sender {
  id: string;
  spec?: Record<string, unknown>;
  managedBy?: string;
  etag?: string;
  owners?: string[];
  secrets?: Array<{ field: string; set?: boolean; setAt?: string; setBy?: string }>;
  updatedAt?: string;
  updatedBy?: string;
}

/** Provider presets: the connection each provider expects, and its sending limits where the relay knows them. */
export const PRESETS = [
  {
    id: 'microsoft365-smtp',
    label: 'Microsoft 365 (SMTP AUTH)',
    transport: 'smtp',
    host: 'smtp.office365.com',
    port: 587,
    security: 'starttls',
    rate: 'microsoft365-smtp',
  },
  { id: 'microsoft365-graph', label: 'Microsoft 365 (Graph API)', transport: 'graph', rate: 'microsoft365-graph' },
  {
    id: 'microsoft365-hve',
    label: 'Microsoft 365 High Volume Email',
    transport: 'smtp',
    host: 'smtp.hve.mx.microsoft',
    port: 587,
    security: 'starttls',
    rate: 'microsoft365-hve',
  },
  {
    id: 'google-workspace',
    label: 'Google Workspace (Gmail SMTP)',
    transport: 'smtp',
    host: 'smtp.gmail.com',
    port: 587,
    security: 'starttls',
    rate: 'google-workspace',
  },
  { id: 'google-smtp-relay', label: 'Google Workspace SMTP relay', transport: 'smtp', host: 'smtp-relay.gmail.com', port: 587, security: 'starttls' },
  { id: 'custom', label: 'Other SMTP server', transport: 'smtp', host: '', port: 587, security: 'starttls' },
] as const;

export function SendersPage({ admin }: { admin: boolean }) {
  const senders = useLoad(() => call<{ senders?: Sender[] }>('ListSenders', { pageSize: 1000 }));
  const stats = useLoad(loadStats, [], 10_000);
  const [creating, setCreating] = useState(false);
  return (
    <section aria-labelledby="senders-title">
      <h1 id="senders-title">Senders</h1>
      <ErrorNote error={senders.error ?? stats.error} />
      {admin ? (
        <p>
          <button type="button" onClick={() => setCreating(!creating)} aria-expanded={creating}>
            {creating ? 'Close the form' : 'New sender'}
          </button>
        </p>
      ) : null}
      {creating ? (
        <SenderForm
          onSaved={(id) => {
            setCreating(false);
            location.hash = `#/senders/${encodeURIComponent(id)}`;
          }}
        />
      ) : null}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Sender</th>
              <th scope="col">Transport</th>
              <th scope="col">Auth</th>
              <th scope="col">Pacing</th>
              <th scope="col">Recipients today</th>
              <th scope="col">Queue</th>
              <th scope="col">Health</th>
            </tr>
          </thead>
          <tbody>
            {(senders.data?.senders ?? []).map((s) => {
              const q = stats.data?.get(s.id);
              const h = health(q);
              const spec = s.spec as Spec | undefined;
              return (
                <tr key={s.id}>
                  <th scope="row">
                    <a href={`#/senders/${encodeURIComponent(s.id)}`}>{s.id}</a>
                    <div class="hint">{String(spec?.from ?? '')}</div>
                  </th>
                  <td>{transportOf(spec)}</td>
                  <td>{authOf(spec)}</td>
                  <td>{spec?.rate?.preset ?? (spec?.rate ? 'custom' : 'none')}</td>
                  <td>
                    {/* The relay counts a day's recipients only for paced senders (those with rate:). */}
                    {spec?.rate
                      ? `${q?.recipientsToday ?? 0}${Number(q?.dailyRecipientCap ?? 0) ? ` / ${q?.dailyRecipientCap}` : ' (no cap)'}`
                      : 'not counted (no pacing)'}
                  </td>
                  <td>{q ? `${q.queued ?? 0} queued` : '—'}</td>
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

/** The form's fields, by the name of their input (`f-<name>`). */
type FieldName = 'id' | 'preset' | 'from' | 'host' | 'port' | 'security' | 'user' | 'tenant' | 'client';

/** Where the API's key paths are edited in this form (the longest matching key wins). */
const FIELD_OF_KEY: Array<[string, FieldName]> = [
  ['sender.id', 'id'],
  ['id', 'id'],
  ['from', 'from'],
  ['graph.mailbox', 'from'],
  ['transport', 'preset'],
  ['rate', 'preset'],
  ['smtp.host', 'host'],
  ['smtp.port', 'port'],
  ['smtp.security', 'security'],
  ['smtp.auth', 'user'],
  ['graph.tenant_id', 'tenant'],
  ['graph.client_id', 'client'],
];

export interface FieldMessages {
  /** The API's message for each field it names, without the key. */
  fields: Partial<Record<FieldName, string>>;
  /** What names no field of this form, as the API said it. */
  other: string[];
}

/**
 * Splits the API's INVALID_ARGUMENT message (`smtp.port: expected a number…; from: required`) into
 * the form's fields. An id already taken is the id field's.
 */
export function fieldMessages(message: string, status?: number): FieldMessages {
  const out: FieldMessages = { fields: {}, other: [] };
  // The id is taken: by a sender made here (409) or one in relay.yaml (412).
  const taken = /^sender "[^"]*" (already exists|is defined in relay\.yaml)/.exec(message);
  if (taken && (status === 409 || status === 412)) {
    out.fields.id = taken[1] === 'already exists' ? 'a sender with this id already exists' : 'a sender with this id is defined in relay.yaml';
    return out;
  }
  for (const part of message.split(/;\s(?=[A-Za-z_][\w.[\]]*:\s)/)) {
    const colon = part.indexOf(': ');
    const key = colon > 0 ? part.slice(0, colon) : '';
    const match = FIELD_OF_KEY.filter(([k]) => key === k || key.startsWith(`${k}.`) || key.startsWith(`${k}[`)).sort((a, b) => b[0].length - a[0].length)[0];
    if (!match) out.other.push(part);
    else if (!out.fields[match[1]]) out.fields[match[1]] = key === match[0] ? part.slice(colon + 2) : part;
  }
  return out;
}

const CHECK_DELAY_MS = 300;

/**
 * Creates a sender or edits one made here. As one types, the API checks the settings
 * (PutSender with validate_only: the same rules as saving) and each field shows its own message
 * once it has been changed; Save is always there and says what stopped it.
 */
export function SenderForm({ sender, onSaved }: { sender?: Sender; onSaved: (id: string) => void }) {
  const spec = (sender?.spec ?? {}) as Spec;
  const [id, setId] = useState(sender?.id ?? '');
  const [preset, setPreset] = useState<string>(sender ? 'keep' : 'microsoft365-smtp');
  const [from, setFrom] = useState<string>(spec.from ?? '');
  const [host, setHost] = useState<string>(spec.smtp?.host ?? 'smtp.office365.com');
  const [port, setPort] = useState<string>(String(spec.smtp?.port ?? 587));
  const [security, setSecurity] = useState<string>(spec.smtp?.security ?? 'starttls');
  const [user, setUser] = useState<string>(spec.smtp?.auth?.user ?? '');
  const [tenant, setTenant] = useState<string>(spec.graph?.tenant_id ?? '');
  const [clientId, setClientId] = useState<string>(spec.graph?.client_id ?? '');
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [checked, setChecked] = useState<FieldMessages>({ fields: {}, other: [] });
  /** Fields changed since the form opened: only their messages show until Save is pressed. */
  const [touched, setTouched] = useState<ReadonlySet<FieldName>>(new Set());
  const [submitted, setSubmitted] = useState(false);
  const checks = useRef(0);
  const chosen = PRESETS.find((p) => p.id === preset);
  const transport = chosen?.transport ?? spec.transport ?? 'smtp';

  const touch = (name: FieldName) => setTouched((t) => (t.has(name) ? t : new Set([...t, name])));
  const edit = (name: FieldName, set: (v: string) => void) => (e: { currentTarget: { value: string } }) => {
    set(e.currentTarget.value);
    touch(name);
  };

  const pick = (value: string) => {
    setPreset(value);
    touch('preset');
    const p = PRESETS.find((x) => x.id === value);
    if (p && 'host' in p) {
      setHost(p.host);
      setPort(String(p.port));
      setSecurity(p.security);
    }
  };

  /** The PutSender request for what the form holds now. */
  const request = () => {
    const next: Spec = { ...spec, from, transport };
    if (transport === 'graph') {
      next.graph = { ...(spec.graph ?? {}), tenant_id: tenant, client_id: clientId, mailbox: from };
      delete next.smtp;
    } else {
      next.smtp = {
        ...(spec.smtp ?? {}),
        host,
        port: Number(port),
        security,
        ...(user ? { auth: { ...(spec.smtp?.auth ?? { type: 'password' }), user } } : {}),
      };
      delete next.graph;
    }
    if (chosen && 'rate' in chosen) next.rate = { ...(spec.rate ?? {}), preset: chosen.rate };
    return { sender: { id, spec: next, etag: sender?.etag ?? '' } };
  };

  // Checked a moment after the typing stops; an answer that a newer check overtook is dropped.
  useEffect(() => {
    const n = ++checks.current;
    const t = setTimeout(() => {
      call('PutSender', { ...request(), validateOnly: true })
        .then(() => n === checks.current && setChecked({ fields: {}, other: [] }))
        .catch((err: unknown) => {
          // Only the API's verdict on the settings is shown here; a failed call is Save's to report.
          if (n !== checks.current || !(err instanceof ApiError) || err.status >= 500 || err.status === 401) return;
          setChecked(fieldMessages(err.message, err.status));
        });
    }, CHECK_DELAY_MS);
    return () => clearTimeout(t);
  }, [id, preset, from, host, port, security, user, tenant, clientId]);

  const save = async (e: Event) => {
    e.preventDefault();
    checks.current++;
    setBusy(true);
    setError(undefined);
    setSubmitted(true);
    try {
      await call('PutSender', request());
      onSaved(id);
    } catch (err) {
      setError((err as Error).message);
      if (err instanceof ApiError) {
        const found = fieldMessages(err.message, err.status);
        setChecked(found);
        // To the first field that needs a change, whose message says what.
        const first = (Object.keys(found.fields) as FieldName[])[0];
        if (first) (document.getElementById(`f-${first}`) as HTMLElement | null)?.focus();
      }
    } finally {
      setBusy(false);
    }
  };

  /** The field's message when it is to be shown: after it was changed, or once Save was pressed. */
  const messageOf = (name: FieldName) => (submitted || touched.has(name) ? checked.fields[name] : undefined);
  /** aria-invalid and aria-describedby for a field's input: its hint, then its message. */
  const described = (name: FieldName, hint = false) => {
    const message = messageOf(name);
    const ids = [hint ? `f-${name}-hint` : '', message ? `f-${name}-error` : ''].filter(Boolean).join(' ');
    return { 'aria-invalid': message ? ('true' as const) : undefined, 'aria-describedby': ids || undefined };
  };
  // Messages that name no field of this form, once something was changed (or Save pressed).
  const other = submitted || touched.size > 0 ? checked.other : [];

  return (
    <form class="card" onSubmit={save} aria-labelledby="sender-form-title" noValidate>
      <h2 id="sender-form-title">{sender ? `Edit ${sender.id}` : 'New sender'}</h2>
      <CheckedField label="Sender id" name="id" hint="Letters, digits, - and _; what clients name when they send." message={messageOf('id')}>
        <input id="f-id" value={id} onInput={edit('id', setId)} required disabled={Boolean(sender)} autoComplete="off" {...described('id', true)} />
      </CheckedField>
      <CheckedField label="Provider" name="preset" message={messageOf('preset')}>
        <select id="f-preset" value={preset} onChange={(e) => pick(e.currentTarget.value)} {...described('preset')}>
          {sender ? <option value="keep">Keep the current settings</option> : null}
          {PRESETS.map((p) => (
            <option key={p.id} value={p.id}>
              {p.label}
            </option>
          ))}
        </select>
      </CheckedField>
      <CheckedField label="From address" name="from" message={messageOf('from')}>
        <input id="f-from" type="email" value={from} onInput={edit('from', setFrom)} required autoComplete="off" {...described('from')} />
      </CheckedField>
      {transport === 'graph' ? (
        <>
          <CheckedField label="Tenant id" name="tenant" message={messageOf('tenant')}>
            <input id="f-tenant" value={tenant} onInput={edit('tenant', setTenant)} required autoComplete="off" {...described('tenant')} />
          </CheckedField>
          <CheckedField label="Application (client) id" name="client" message={messageOf('client')}>
            <input id="f-client" value={clientId} onInput={edit('client', setClientId)} required autoComplete="off" {...described('client')} />
          </CheckedField>
        </>
      ) : (
        <>
          <CheckedField label="SMTP host" name="host" message={messageOf('host')}>
            <input id="f-host" value={host} onInput={edit('host', setHost)} required autoComplete="off" {...described('host')} />
          </CheckedField>
          <CheckedField label="Port" name="port" message={messageOf('port')}>
            <input id="f-port" inputMode="numeric" value={port} onInput={edit('port', setPort)} required autoComplete="off" {...described('port')} />
          </CheckedField>
          <CheckedField label="Security" name="security" message={messageOf('security')}>
            <select id="f-security" value={security} onChange={edit('security', setSecurity)} {...described('security')}>
              <option value="starttls">STARTTLS</option>
              <option value="tls">Implicit TLS</option>
              <option value="none">None</option>
            </select>
          </CheckedField>
          <CheckedField
            label="Sign-in user (empty: no SMTP AUTH)"
            name="user"
            hint="The password is set on the sender's page, never here."
            message={messageOf('user')}
          >
            <input id="f-user" value={user} onInput={edit('user', setUser)} autoComplete="off" {...described('user', true)} />
          </CheckedField>
        </>
      )}
      {other.length > 0 && !error ? (
        <ul class="field-error" aria-label="Other problems with these settings">
          {other.map((m) => (
            <li key={m}>{m}</li>
          ))}
        </ul>
      ) : null}
      <ErrorNote error={error} />
      <button type="submit" disabled={busy}>
        {busy ? 'Saving…' : 'Save sender'}
      </button>
    </form>
  );
}

/** A labelled field with its hint and, when the API named it, its message (what aria-describedby points at). */
function CheckedField(props: { label: string; name: FieldName; hint?: string; message: string | undefined; children: ComponentChildren }) {
  const id = `f-${props.name}`;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      {props.children}
      {props.hint ? (
        <small id={`${id}-hint`} class="hint">
          {props.hint}
        </small>
      ) : null}
      {props.message ? (
        <small id={`${id}-error`} class="field-error">
          {props.message}
        </small>
      ) : null}
    </div>
  );
}
