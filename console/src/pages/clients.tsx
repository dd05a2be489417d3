import { useState } from 'preact/hooks';
import { call } from '../api';
import { ErrorNote, Field, useLoad, when } from '../ui';

interface Client {
  name: string;
  spec?: { senders?: string[]; admin?: boolean };
  managedBy?: string;
  apiKeys?: Array<{ id: string; createdAt?: string; expiresAt?: string; createdBy?: string }>;
}

export function ClientsPage() {
  const { data, error, reload } = useLoad(() => call<{ clients?: Client[] }>('ListClients', { pageSize: 1000 }));
  const [name, setName] = useState('');
  const [senders, setSenders] = useState('');
  const [newKey, setNewKey] = useState<{ client: string; key: string } | undefined>(undefined);
  const [err, setErr] = useState<string | undefined>(undefined);
  const run = async (f: () => Promise<void>) => {
    setErr(undefined);
    try {
      await f();
      reload();
    } catch (e) {
      setErr((e as Error).message);
    }
  };
  const create = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const list = senders
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      await call('PutClient', { client: { name, spec: { name, senders: list } } });
      setName('');
      setSenders('');
    });
  };
  return (
    <section aria-labelledby="clients-title">
      <h1 id="clients-title">Clients and keys</h1>
      <ErrorNote error={error ?? err} />
      {newKey ? (
        <div class="card" role="status">
          <p>
            New API key for <strong>{newKey.client}</strong> — copy it now, it is not shown again:
          </p>
          <code class="secret">{newKey.key}</code>
        </div>
      ) : null}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Client</th>
              <th scope="col">Senders</th>
              <th scope="col">Keys</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {(data?.clients ?? []).map((c) => (
              <tr key={c.name}>
                <th scope="row">
                  {c.name}
                  {c.spec?.admin ? <div class="hint">admin</div> : null}
                </th>
                <td>{(c.spec?.senders ?? []).join(', ')}</td>
                <td>
                  {c.managedBy === 'file' ? (
                    'relay.yaml'
                  ) : (
                    <ul>
                      {(c.apiKeys ?? []).map((k) => (
                        <li key={k.id}>
                          <code>{k.id}</code> {when(k.createdAt)}
                          {k.expiresAt ? ` (expires ${when(k.expiresAt)})` : ''}{' '}
                          <button
                            type="button"
                            class="danger"
                            onClick={() =>
                              confirm(`Revoke key ${k.id} of ${c.name}? Callers using it are refused at once.`) &&
                              void run(async () => void (await call('RevokeApiKey', { client: c.name, keyId: k.id })))
                            }
                          >
                            Revoke
                          </button>
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>
                  {c.managedBy === 'file' ? null : (
                    <button
                      type="button"
                      onClick={() =>
                        void run(async () => {
                          const r = await call<{ apiKey: string }>('CreateApiKey', { client: c.name });
                          setNewKey({ client: c.name, key: r.apiKey });
                        })
                      }
                    >
                      New key
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <form class="card" onSubmit={create}>
        <h2>New client</h2>
        <Field label="Name" id="c-name">
          <input id="c-name" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
        </Field>
        <Field label="Senders (comma-separated ids)" id="c-senders">
          <input id="c-senders" value={senders} onInput={(e) => setSenders(e.currentTarget.value)} />
        </Field>
        <button type="submit">Create client</button>
      </form>
    </section>
  );
}
