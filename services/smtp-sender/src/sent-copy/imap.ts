import { ImapFlow, type ListResponse } from 'imapflow';
import type { ImapConfig } from '@relay/config';

/** How the copy signs in: the sender's SMTP password, or its XOAUTH2 access token. */
export type ImapLogin = { user: string; pass: string } | { user: string; accessToken: string };

/** What an append found: `appended`, or `present` when the message was in the folder already; and the folder. */
export interface AppendOutcome {
  outcome: 'appended' | 'present';
  folder: string;
}

export interface AppendOptions {
  /** The relay's message id: the copy's X-Relay-Message-ID, searched for before appending. */
  relayMessageId: string;
  /** The search looks at messages appended since this day (IMAP SINCE counts whole days). */
  since: Date;
  timeoutMs?: number;
}

/**
 * An IMAP failure as the operator needs it: imapflow's message ("Command failed") with the
 * server's own answer (`responseText`, e.g. "[AUTHENTICATIONFAILED] Authentication failed.").
 */
export function describeImapError(err: unknown): string {
  const e = err as { message?: unknown; responseText?: unknown; serverResponseCode?: unknown };
  const message = err instanceof Error ? err.message || err.name : String(err);
  if (typeof e.responseText !== 'string' || !e.responseText) return message;
  const code = typeof e.serverResponseCode === 'string' && !e.responseText.includes(e.serverResponseCode) ? `[${e.serverResponseCode}] ` : '';
  return `${message}: ${code}${e.responseText}`;
}

/** The folder name used when the server marks none with SPECIAL-USE \Sent. */
export const DEFAULT_SENT_FOLDER = 'Sent';

/**
 * Appends `raw` to the mailbox's Sent folder (SPECIAL-USE \Sent, else "Sent", created if
 * missing) flagged \Seen, unless a message with the same X-Relay-Message-ID is there already (a
 * job handed out again after an append whose ack was lost, or the provider's own copy).
 */
export async function appendToSent(imap: ImapConfig, login: ImapLogin, raw: Buffer, o: AppendOptions): Promise<AppendOutcome> {
  const timeout = o.timeoutMs ?? 30_000;
  const client = new ImapFlow({
    host: imap.host,
    port: imap.port,
    secure: imap.security === 'tls',
    // starttls: the upgrade is required; credentials never go over a plain connection.
    ...(imap.security === 'starttls' ? { doSTARTTLS: true } : {}),
    ...(imap.servername ? { servername: imap.servername } : {}),
    tls: { minVersion: 'TLSv1.2', ...(imap.servername ? { servername: imap.servername } : {}), ...(imap.ca ? { ca: imap.ca } : {}) },
    auth: login,
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout * 2,
  });
  // A connection that fails after connect() reports through this event; the call in progress rejects too.
  client.on('error', () => {});
  try {
    await client.connect();
    const path = await sentFolder(client);
    const lock = await client.getMailboxLock(path);
    try {
      const found = await client.search({ header: { 'X-Relay-Message-ID': o.relayMessageId }, since: o.since }, { uid: true });
      if (found && found.length > 0) return { outcome: 'present', folder: path };
      const appended = await client.append(path, raw, ['\\Seen']);
      if (!appended) throw new Error(`the IMAP server did not take the message into ${path}`);
      return { outcome: 'appended', folder: path };
    } finally {
      lock.release();
    }
  } finally {
    await client.logout().catch(() => client.close());
  }
}

async function sentFolder(client: ImapFlow): Promise<string> {
  const folders = await client.list();
  const sent = pick(folders, 'extension') ?? pick(folders, undefined);
  if (sent) return sent.path;
  const named = folders.find((f) => f.path.toLowerCase() === DEFAULT_SENT_FOLDER.toLowerCase());
  if (named) return named.path;
  await client.mailboxCreate(DEFAULT_SENT_FOLDER);
  return DEFAULT_SENT_FOLDER;
}

/** The \Sent folder as the server marks it (`extension`), or as imapflow recognises it by name. */
function pick(folders: ListResponse[], source: 'extension' | undefined): ListResponse | undefined {
  return folders.find((f) => f.specialUse === '\\Sent' && (source === undefined || f.specialUseSource === source));
}
