import type { SenderConfig } from '@relay/config';
import { tokenRoles } from './graph-auth.js';
import type { TokenCache } from './token-cache.js';

/** Application permissions that let an app read its own registration (passwordCredentials). */
const READS_APPLICATIONS = new Set(['Application.Read.All', 'Application.ReadWrite.All', 'Application.ReadWrite.OwnedBy', 'Directory.Read.All']);

/** The largest application object read (its passwordCredentials are a few hundred bytes each). */
const MAX_BODY = 256 * 1024;

interface PasswordCredential {
  endDateTime?: unknown;
  hint?: unknown;
}

/**
 * The end of the client secret an app signs in with, read from its own registration in Graph
 * (`GET /applications(appId='…')?$select=passwordCredentials`): the credential whose `hint` (the
 * secret's first three characters) matches; the earliest when several do. Undefined when none
 * matches. Throws with Graph's status when the call fails (403: the app may not read itself).
 */
export async function readClientSecretEnd(opts: {
  graphUrl: string;
  clientId: string;
  secret: string;
  accessToken: string;
  timeoutMs?: number;
}): Promise<Date | undefined> {
  const url = `${opts.graphUrl}/v1.0/applications(appId='${encodeURIComponent(opts.clientId.replaceAll("'", "''"))}')?$select=passwordCredentials`;
  const res = await fetch(url, { headers: { authorization: `Bearer ${opts.accessToken}` }, signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000) });
  const text = await boundedText(res, url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 200)}`);
  const body = JSON.parse(text) as { passwordCredentials?: PasswordCredential[] };
  const hint = opts.secret.slice(0, 3);
  const ends = (Array.isArray(body.passwordCredentials) ? body.passwordCredentials : [])
    .filter((c) => c.hint === hint && typeof c.endDateTime === 'string')
    .map((c) => new Date(c.endDateTime as string))
    .filter((d) => !Number.isNaN(d.getTime()))
    .sort((a, b) => a.getTime() - b.getTime());
  return ends[0];
}

/** The body as text, refused once it passes MAX_BODY bytes (read no further). */
async function boundedText(res: Response, url: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body ?? []) {
    size += chunk.byteLength;
    if (size > MAX_BODY) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`GET ${url}: the answer is larger than ${MAX_BODY} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * For a Graph sender with a client secret and no client_secret_expires_at: the secret's end from
 * Graph, with the app-only token the sender already holds (none is fetched for this). `{ end }`
 * once asked (end undefined when the token carries no permission to read applications, without
 * a call, or no credential matches); undefined when there is no token yet (ask later).
 */
export function graphClientSecretEnd(cache: Pick<TokenCache, 'get'>): (sender: SenderConfig) => Promise<{ end: Date | undefined } | undefined> {
  return async (sender) => {
    const graph = sender.graph;
    if (!graph?.clientSecret || graph.clientSecretExpiresAt) return { end: undefined };
    const token = await cache.get(sender.id);
    if (!token) return undefined;
    const roles = tokenRoles(token.accessToken);
    if (roles && !roles.some((r) => READS_APPLICATIONS.has(r))) return { end: undefined };
    return {
      end: await readClientSecretEnd({
        graphUrl: graph.graphUrl,
        clientId: graph.clientId,
        secret: graph.clientSecret.reveal(),
        accessToken: token.accessToken,
      }),
    };
  };
}
