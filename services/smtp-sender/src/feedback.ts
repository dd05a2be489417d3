import { recordDeliveryReport, reportClaims, startReportReaders, type Bus, type ReportPass } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import { describe } from '@relay/core';
import { MAX_NDR_BYTES, parseDeliveryReport } from '@relay/mail';
import { GetSmtpAuthResponse_Kind as Kind, type GetSmtpAuthResponse } from '@relay/proto';
import { ImapFlow } from 'imapflow';

export interface ImapReportSource {
  sender: string;
  host: string;
  port: number;
  security: 'tls' | 'starttls';
  /** The name the server's certificate is checked against, when not `host`. */
  servername?: string | undefined;
  /** PEM of a private CA the server's certificate is issued by. */
  ca?: string | undefined;
  folder: string;
  processedFolder: string;
  /** The sender's sign-in (from the credentials service): a password or an XOAUTH2 token. */
  auth(): Promise<GetSmtpAuthResponse>;
}

/** Where reading a folder got to: UIDs up to lastUid were looked at (while UIDVALIDITY stays). */
export interface FolderCursor {
  uidValidity?: bigint;
  lastUid: number;
}

export interface ReadResult {
  /** Messages looked at. */
  read: number;
  /** Reports recorded on their messages. */
  recorded: number;
  /** Reports moved to the processed folder (recorded, or about a message that takes no more). */
  moved: number;
  /** Messages left where they are: not delivery reports, or about no message of this relay. */
  left: number;
  /** Messages over the size bound, left unread. */
  tooLarge: number;
}

export interface FeedbackLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

const SERVICE = 'relay-smtp-sender';

/**
 * Reads the new messages of a sender's report folder over IMAP once: each delivery report is
 * recorded on the relay's message it is about (see recordDeliveryReport) and moved to the
 * processed folder (made when missing); nothing is deleted, and other mail is left alone.
 * A message over `maxBytes` is not downloaded. A failure to record (broker down) stops the pass
 * before that message, which the next pass reads again.
 */
export async function readReportsOnce(
  bus: Bus,
  source: ImapReportSource,
  cursor: FolderCursor,
  log: FeedbackLog,
  maxBytes = MAX_NDR_BYTES,
): Promise<ReadResult> {
  const result: ReadResult = { read: 0, recorded: 0, moved: 0, left: 0, tooLarge: 0 };
  const client = new ImapFlow({
    host: source.host,
    port: source.port,
    secure: source.security === 'tls',
    // starttls: the upgrade is required; credentials never go over a plain connection.
    doSTARTTLS: source.security === 'starttls',
    ...(source.servername ? { servername: source.servername } : {}),
    tls: { minVersion: 'TLSv1.2', ...(source.servername ? { servername: source.servername } : {}), ...(source.ca ? { ca: source.ca } : {}) },
    auth: imapAuth(await source.auth()),
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: 30_000,
  });
  client.on('error', (err: unknown) => log.warn({ err: describe(err), sender: source.sender }, 'IMAP connection error'));
  await client.connect();
  try {
    const lock = await client.getMailboxLock(source.folder);
    const toMove: number[] = [];
    let failure: unknown;
    try {
      const box = client.mailbox;
      const uidValidity = box ? box.uidValidity : undefined;
      if (cursor.uidValidity !== uidValidity) {
        cursor.uidValidity = uidValidity;
        cursor.lastUid = 0;
      }
      // Sizes first, so that nothing over the bound is downloaded; `n:*` names the newest
      // message even when it is older than n, hence the filter.
      const found: Array<{ uid: number; size: number }> = [];
      for await (const m of client.fetch(`${cursor.lastUid + 1}:*`, { uid: true, size: true }, { uid: true })) {
        if (m.uid > cursor.lastUid) found.push({ uid: m.uid, size: m.size ?? 0 });
      }
      found.sort((a, b) => a.uid - b.uid);
      for (const { uid, size } of found) {
        result.read++;
        if (size > maxBytes) {
          result.tooLarge++;
          log.warn(
            { sender: source.sender, folder: source.folder, uid, size, max_bytes: maxBytes },
            'message too large to read as a delivery report; left in place',
          );
          cursor.lastUid = uid;
          continue;
        }
        const fetched = await client.fetchOne(String(uid), { source: true }, { uid: true });
        const raw = fetched ? fetched.source : undefined;
        const report = raw ? await parseDeliveryReport(raw, maxBytes).catch(() => undefined) : undefined;
        if (!report) {
          result.left++;
          cursor.lastUid = uid;
          continue;
        }
        let outcome;
        try {
          outcome = await recordDeliveryReport(bus, report, SERVICE);
        } catch (err) {
          failure = err;
          break;
        }
        cursor.lastUid = uid;
        if (outcome.recorded) {
          result.recorded++;
          toMove.push(uid);
          log.info({ sender: source.sender, message_id: outcome.messageId, state: outcome.state, uid }, 'delivery report recorded');
        } else if (outcome.messageId && outcome.reason !== 'no such message') {
          // About a message of this relay that takes no more reports (BOUNCED already, or not SENT).
          toMove.push(uid);
          log.info({ sender: source.sender, message_id: outcome.messageId, uid, reason: outcome.reason }, 'delivery report not recorded');
        } else {
          result.left++;
          log.info(
            { sender: source.sender, message_id: outcome.messageId, uid, reason: outcome.reason },
            'delivery report about no message of this relay; left in place',
          );
        }
      }
      if (toMove.length > 0) {
        await ensureMailbox(client, source.processedFolder);
        const moved = await client.messageMove(toMove.join(','), source.processedFolder, { uid: true });
        if (moved) result.moved = toMove.length;
      }
    } finally {
      lock.release();
    }
    if (failure) throw failure;
  } finally {
    await client.logout().catch(() => client.close());
  }
  return result;
}

/**
 * The credentials service says the sender's token lacks IMAP's scope. Counted as a failed sign-in
 * (`authenticationFailed`, as imapflow marks the server's refusal): the next pass asks for new
 * credentials, which after a new sign-in carry the scope.
 */
export class ImapScopeMissingError extends Error {
  override name = 'ImapScopeMissingError';
  readonly authenticationFailed = true;
}

/** A pass that failed to sign in: the server refused the credentials, or they cannot open IMAP. */
export function isSignInFailure(err: unknown): boolean {
  return err instanceof ImapScopeMissingError || (err as { authenticationFailed?: unknown } | undefined)?.authenticationFailed === true;
}

function imapAuth(auth: GetSmtpAuthResponse): { user: string; pass?: string; accessToken?: string } {
  if (auth.kind === Kind.PASSWORD) return { user: auth.user, pass: auth.password };
  // The credentials service knows the token lacks IMAP's scope: say what to do, not just that IMAP refused.
  if (auth.kind === Kind.XOAUTH2 && auth.imapRefusal) throw new ImapScopeMissingError(auth.imapRefusal);
  if (auth.kind === Kind.XOAUTH2) return { user: auth.user, accessToken: auth.accessToken };
  throw new Error('the sender has no SMTP sign-in to read its mailbox with (feedback.imap needs smtp.auth)');
}

async function ensureMailbox(client: ImapFlow, path: string): Promise<void> {
  const boxes = await client.list();
  if (boxes.some((b) => b.path === path)) return;
  await client.mailboxCreate(path);
}

export interface FeedbackReaders {
  stop(): Promise<void>;
}

/**
 * Reads the report folder of every SMTP sender with `feedback.imap`, each on its own interval,
 * with the sender's SMTP credentials. Senders are looked up on each pass: a configuration
 * change takes effect at the next one. After a pass that failed to sign in, the next one asks for
 * fresh credentials (`tokenRejected`), so a new sign-in or password takes effect at once rather
 * than when the cached credentials run out.
 */
export function startFeedbackReaders(
  bus: Bus,
  senders: () => Iterable<SenderConfig>,
  auth: (sender: string, opts: { tokenRejected: boolean }) => Promise<GetSmtpAuthResponse>,
  log: FeedbackLog,
  checkEveryMs = 5_000,
): FeedbackReaders {
  // Senders whose last pass failed to sign in: the next pass asks for new credentials.
  const tokenRejected = new Set<string>();
  return startReportReaders(
    senders,
    (s) => {
      const f = s.feedback;
      if (!f?.imap) return undefined;
      const source: ImapReportSource = {
        sender: s.id,
        ...f.imap,
        folder: f.folder,
        processedFolder: f.processedFolder,
        auth: () => auth(s.id, { tokenRejected: tokenRejected.has(s.id) }),
      };
      return {
        key: `imap\0${s.id}\0${f.imap.host}\0${f.imap.port}\0${f.folder}`,
        where: { host: f.imap.host },
        async read(pass: ReportPass<unknown>) {
          const cursor = cursorFrom(pass.cursor);
          try {
            const result = await readReportsOnce(bus, source, cursor, log);
            tokenRejected.delete(s.id);
            return result;
          } catch (err) {
            if (isSignInFailure(err)) tokenRejected.add(s.id);
            throw err;
          } finally {
            pass.cursor = storedCursor(cursor);
          }
        },
      };
    },
    log,
    // One replica reads a folder per interval, from where the last pass (of any replica) got to.
    { claims: reportClaims(bus), checkEveryMs },
  );
}

/** A folder cursor as the report readers' bucket keeps it (JSON: UIDVALIDITY as a string). */
interface StoredCursor {
  uidValidity?: string;
  lastUid: number;
}

function storedCursor(c: FolderCursor): StoredCursor {
  return { lastUid: c.lastUid, ...(c.uidValidity !== undefined ? { uidValidity: String(c.uidValidity) } : {}) };
}

/** The cursor a stored one describes; anything else (none yet, or malformed) starts from the first message. */
export function cursorFrom(stored: unknown): FolderCursor {
  const c = stored as Partial<StoredCursor> | undefined;
  if (!c || !Number.isSafeInteger(c.lastUid) || (c.lastUid as number) < 0) return { lastUid: 0 };
  const validity = typeof c.uidValidity === 'string' && /^\d{1,20}$/.test(c.uidValidity) ? BigInt(c.uidValidity) : undefined;
  return validity === undefined ? { lastUid: 0 } : { lastUid: c.lastUid as number, uidValidity: validity };
}
