import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { loadSession, type SessionInfo, signOut } from './api';
import { ClientsPage } from './pages/clients';
import { MessagePage } from './pages/message';
import { MessagesPage } from './pages/messages';
import { QueuesPage } from './pages/queues';
import { SenderPage } from './pages/sender';
import { SendersPage } from './pages/senders';
import { ErrorNote } from './ui';
import './style.css';

function useHash(): string {
  const [hash, setHash] = useState(location.hash || '#/senders');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/senders');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function App() {
  const [session, setSession] = useState<SessionInfo | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const hash = useHash();
  useEffect(() => {
    loadSession()
      .then(setSession)
      .catch((e: Error) => setError(`The console cannot reach the relay: ${e.message}`));
  }, []);
  if (error) return <ErrorNote error={error} />;
  if (!session) return <p aria-busy="true">Loading…</p>;
  if (!session.signedIn) return <SignIn session={session} />;
  if (session.role === 'none') {
    return (
      <main class="narrow">
        <h1>No access yet</h1>
        <p>
          You are signed in as {session.email}, but you are not an admin of this relay and own no sender. Ask{' '}
          {session.contact ? <strong>{session.contact}</strong> : 'the relay administrators'} to make you an owner of your sender (its owners list) or an admin.
        </p>
        <SignOutButton />
      </main>
    );
  }
  const admin = session.role === 'admin';
  // A page's own search follows "?" (e.g. #/messages?subject=exam).
  const [, page, arg] = (hash.split('?')[0] ?? '').split('/');
  const links = [['senders', 'Senders'], ['messages', 'Messages'], ['queues', 'Queues'], ...(admin ? [['clients', 'Clients and keys']] : [])] as const;
  return (
    <>
      {/* A button, not a link to #main: the address's # is the console's route. */}
      <button type="button" class="skip" onClick={() => document.getElementById('main')?.focus()}>
        Skip to content
      </button>
      <header>
        <nav aria-label="Console">
          <strong class="brand">Campus Relay</strong>
          <ul>
            {links.map(([id, label]) => (
              <li key={id}>
                <a href={`#/${id}`} aria-current={page === id ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
          <span class="who">
            {session.email} ({session.role}) <SignOutButton /> <SignOutButton everywhere />
          </span>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        {page === 'senders' && arg ? (
          <SenderPage id={decodeURIComponent(arg)} admin={admin} />
        ) : page === 'messages' && arg ? (
          <MessagePage id={decodeURIComponent(arg)} />
        ) : page === 'messages' ? (
          <MessagesPage senders={admin ? [] : (session.senders ?? [])} traceUrlTemplate={session.traceUrlTemplate} />
        ) : page === 'queues' ? (
          <QueuesPage />
        ) : page === 'clients' && admin ? (
          <ClientsPage />
        ) : (
          <SendersPage admin={admin} />
        )}
      </main>
    </>
  );
}

function SignIn({ session }: { session: SessionInfo }) {
  return (
    <main class="narrow">
      <h1>Campus Relay console</h1>
      {session.signIn ? (
        <p>
          <a class="button" href={session.signIn}>
            Sign in with your campus account
          </a>
        </p>
      ) : session.demo ? (
        <p>Demo mode: open the one-time sign-in link that npm run stack printed in its terminal.</p>
      ) : (
        <p>Sign-in is not set up: add a console: section to relay.yaml (see docs/console.md).</p>
      )}
    </main>
  );
}

/** Sign out here, or `everywhere`: every sign-in of this person, in any browser. */
function SignOutButton({ everywhere = false }: { everywhere?: boolean }) {
  const [error, setError] = useState<string | undefined>(undefined);
  return (
    <>
      <button
        type="button"
        class="link"
        onClick={async () => {
          try {
            await signOut(everywhere);
            location.reload();
          } catch (e) {
            setError((e as Error).message);
          }
        }}
      >
        {everywhere ? 'Sign out everywhere' : 'Sign out'}
      </button>
      {error ? (
        <span class="error" role="alert">
          {' '}
          {error}
        </span>
      ) : null}
    </>
  );
}

render(<App />, document.getElementById('app')!);
