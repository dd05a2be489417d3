import { useState } from 'preact/hooks';
import { call } from '../api';
import { ErrorNote, Field, useLoad } from '../ui';
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

/** The settings of a sender as relay.yaml writes them (the fields the console shows or edits). */
export interface Spec {
  from?: string;
  transport?: string;
  smtp?: { host?: string; port?: number; security?: string; auth?: { type?: string; user?: string; provider?: string; flow?: string } };
  graph?: { tenant_id?: string; client_id?: string; mailbox?: string; flow?: string };
  rate?: { preset?: string };
  [key: string]: unknown;
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

export function transportOf(spec: Spec | undefined): string {
  return spec?.transport === 'graph' ? 'Graph API' : `SMTP ${spec?.smtp?.host ?? ''}${spec?.smtp?.port ? `:${spec.smtp.port}` : ''}`;
}

export function authOf(spec: Spec | undefined): string {
  if (spec?.transport === 'graph') return 'app-only (client secret)';
  const a = spec?.smtp?.auth;
  if (!a || a.type === 'none') return 'none';
  if (a.type === 'oauth2') return `OAuth2 ${a.provider ?? ''} (${a.flow ?? ''})`;
  return `password (${a.user ?? ''})`;
}

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

/** Creates a sender or edits one made here; the API checks it and its field messages are shown as they come. */
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
  const chosen = PRESETS.find((p) => p.id === preset);
  const transport = chosen?.transport ?? spec.transport ?? 'smtp';

  const pick = (value: string) => {
    setPreset(value);
    const p = PRESETS.find((x) => x.id === value);
    if (p && 'host' in p) {
      setHost(p.host);
      setPort(String(p.port));
      setSecurity(p.security);
    }
  };

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
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
    try {
      await call('PutSender', { sender: { id, spec: next, etag: sender?.etag ?? '' } });
      onSaved(id);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card" onSubmit={save} aria-labelledby="sender-form-title">
      <h2 id="sender-form-title">{sender ? `Edit ${sender.id}` : 'New sender'}</h2>
      <Field label="Sender id" id="f-id" hint="Letters, digits, - and _; what clients name when they send.">
        <input id="f-id" value={id} onInput={(e) => setId(e.currentTarget.value)} required disabled={Boolean(sender)} aria-describedby="f-id-hint" />
      </Field>
      <Field label="Provider" id="f-preset">
        <select id="f-preset" value={preset} onChange={(e) => pick(e.currentTarget.value)}>
          {sender ? <option value="keep">Keep the current settings</option> : null}
          {PRESETS.map((p) => (
            <option key={p.id} value={p.id}>
              {p.label}
            </option>
          ))}
        </select>
      </Field>
      <Field label="From address" id="f-from">
        <input id="f-from" type="email" value={from} onInput={(e) => setFrom(e.currentTarget.value)} required />
      </Field>
      {transport === 'graph' ? (
        <>
          <Field label="Tenant id" id="f-tenant">
            <input id="f-tenant" value={tenant} onInput={(e) => setTenant(e.currentTarget.value)} required />
          </Field>
          <Field label="Application (client) id" id="f-client">
            <input id="f-client" value={clientId} onInput={(e) => setClientId(e.currentTarget.value)} required />
          </Field>
        </>
      ) : (
        <>
          <Field label="SMTP host" id="f-host">
            <input id="f-host" value={host} onInput={(e) => setHost(e.currentTarget.value)} required />
          </Field>
          <Field label="Port" id="f-port">
            <input id="f-port" inputMode="numeric" value={port} onInput={(e) => setPort(e.currentTarget.value)} required />
          </Field>
          <Field label="Security" id="f-security">
            <select id="f-security" value={security} onChange={(e) => setSecurity(e.currentTarget.value)}>
              <option value="starttls">STARTTLS</option>
              <option value="tls">Implicit TLS</option>
              <option value="none">None</option>
            </select>
          </Field>
          <Field label="Sign-in user (empty: no SMTP AUTH)" id="f-user" hint="The password is set on the sender's page, never here.">
            <input id="f-user" value={user} onInput={(e) => setUser(e.currentTarget.value)} aria-describedby="f-user-hint" />
          </Field>
        </>
      )}
      <ErrorNote error={error} />
      <button type="submit" disabled={busy}>
        {busy ? 'Saving…' : 'Save sender'}
      </button>
    </form>
  );
}
