/** The signed-in person as /api/session tells it. */
export interface SessionInfo {
  signedIn: boolean;
  signIn?: string;
  demo?: boolean;
  email?: string;
  name?: string;
  role?: 'admin' | 'owner' | 'none';
  senders?: string[];
  csrf?: string;
  contact?: string;
  /** RELAY_TRACE_URL_TEMPLATE: a message's trace, `{trace_id}` standing for its trace id. */
  traceUrlTemplate?: string;
}

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

let csrf = '';

export async function loadSession(): Promise<SessionInfo> {
  const res = await fetch('/api/session', { credentials: 'same-origin' });
  const s = (await res.json()) as SessionInfo;
  csrf = s.csrf ?? '';
  return s;
}

/** One AdminService call (e.g. "ListSenders") with its request in protobuf JSON; throws ApiError with the API's message. */
export async function call<T = Record<string, unknown>>(method: string, body: unknown = {}): Promise<T> {
  const res = await fetch(`/api/${method}`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
    body: JSON.stringify(body),
  });
  const out = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) throw new ApiError(out.error ?? `${method} failed (HTTP ${res.status})`, res.status);
  return out;
}

/**
 * Ends the sign-in on every replica (with `everywhere`, all of this person's sign-ins); throws
 * ApiError when the relay could not record it (the sign-in then still works).
 */
export async function signOut(everywhere = false): Promise<void> {
  const res = await fetch(everywhere ? '/auth/logout-everywhere' : '/auth/logout', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'x-csrf-token': csrf },
  });
  if (!res.ok) {
    const out = (await res.json().catch(() => ({}))) as { error?: string };
    throw new ApiError(`Not signed out: ${out.error ?? `HTTP ${res.status}`}`, res.status);
  }
}
