import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import { once } from '@relay/core';
import {
  baseOptions,
  closeSmtp,
  dropClients,
  listen,
  multiLineReplies,
  smtpError,
  type SmtpConnection,
  type SmtpReply,
  type SmtpSecurity,
} from './smtp-common.js';
import { testCa, type CertPair } from './tls.js';
import { Changes } from './wait.js';

export interface ReceivedMail {
  envelope: { from: string; to: string[] };
  /** MAIL FROM's parameters, upper-case names (e.g. `{ BODY: '8BITMIME' }`). */
  mailFromArgs: Record<string, string | boolean>;
  /** The message exactly as the client sent it after DATA. */
  raw: Buffer;
  parsed: ParsedMail;
  /** Whether the connection was encrypted (implicit TLS or after STARTTLS). */
  secure: boolean;
  user?: string;
  authMethod?: string;
}

export interface AuthAttempt {
  method: string;
  username: string;
  accepted: boolean;
  /** The bearer token of an XOAUTH2 attempt. */
  accessToken?: string;
}

/** What the `reply` hook sees: a recipient (RCPT TO) or a whole message (after DATA). */
export type SmtpReplyContext =
  | { phase: 'rcpt'; from: string; rcpt: string; user: string | undefined }
  | {
      phase: 'data';
      from: string;
      to: string[];
      raw: Buffer;
      user: string | undefined;
      /** 1 for the first message offered to this server, counting rejected ones. */
      attempt: number;
    };

export interface SmtpServerOptions {
  /** Default 'none'. */
  security?: SmtpSecurity;
  /** Default: the test server certificate (pass `testCa().untrusted` for certificate errors). */
  cert?: CertPair;
  /** Accepted PLAIN/LOGIN credentials; when set, clients must authenticate before sending. */
  users?: Record<string, string>;
  /** Enables XOAUTH2 (and requires authentication); return true to accept the token. */
  xoauth2?: (user: string, accessToken: string) => boolean;
  /** Fails every authentication with this reply, e.g. 535 "5.7.139 ... disabled for the Tenant." */
  authFailure?: SmtpReply;
  /** Answers a recipient or a message with a reply of its own; undefined or 2xx accepts. */
  reply?: (ctx: SmtpReplyContext) => SmtpReply | undefined | Promise<SmtpReply | undefined>;
  /** Advertised SIZE; larger messages get 552. */
  maxSize?: number;
  /** Default 0: any free port. Always on 127.0.0.1. */
  port?: number;
}

export interface TestSmtpServer {
  host: '127.0.0.1';
  port: number;
  /** Accepted messages, in order. */
  messages: ReceivedMail[];
  authAttempts: AuthAttempt[];
  /** TCP connections accepted so far, including ones whose TLS handshake failed. */
  readonly connections: number;
  /** Connection-level errors the server saw, such as failed TLS handshakes. */
  errors: Error[];
  /** Resolves once at least `n` messages were accepted; rejects after `timeoutMs` (default 10 s). */
  waitForMessages(n: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  /** Cuts every open client connection (clients must connect, and authenticate, again). */
  dropConnections(): void;
  /** Closes the server and any open client connections; safe to call twice. */
  close(): Promise<void>;
}

// What Gmail and Microsoft 365 send as the base64 JSON challenge for a refused bearer token.
const XOAUTH2_CHALLENGE = { status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' };
const XOAUTH2_FAILURE: SmtpReply = { code: 535, message: '5.7.3 Authentication unsuccessful' };
const PASSWORD_FAILURE: SmtpReply = { code: 535, message: '5.7.3 Authentication unsuccessful' };

/** A real SMTP server on 127.0.0.1 that keeps every accepted message, parsed. */
export async function startSmtpServer(opts: SmtpServerOptions = {}): Promise<TestSmtpServer> {
  const security = opts.security ?? 'none';
  const authMethods = [...(opts.users || opts.authFailure ? ['PLAIN', 'LOGIN'] : []), ...(opts.xoauth2 ? ['XOAUTH2'] : [])];
  const messages: ReceivedMail[] = [];
  const authAttempts: AuthAttempt[] = [];
  const errors: Error[] = [];
  const authBySession = new Map<string, { user: string; method: string }>();
  const changes = new Changes();
  let connections = 0;
  let offered = 0;

  const userOf = (session: SMTPServerSession) => authBySession.get(session.id)?.user;
  const fromOf = (session: SMTPServerSession) => (session.envelope.mailFrom ? session.envelope.mailFrom.address : '');
  const decide = async (ctx: SmtpReplyContext) => opts.reply?.(ctx);

  const onAuth = (auth: SMTPServerAuthentication, session: SMTPServerSession, callback: Parameters<NonNullable<SMTPServer['onAuth']>>[2]) => {
    const username = auth.username ?? '';
    const record = (accepted: boolean) => {
      authAttempts.push({ method: auth.method, username, accepted, ...(auth.accessToken ? { accessToken: auth.accessToken } : {}) });
      if (accepted) authBySession.set(session.id, { user: username, method: auth.method });
    };
    if (opts.authFailure) {
      record(false);
      return callback(smtpError(opts.authFailure));
    }
    if (auth.method === 'XOAUTH2') {
      const accepted = opts.xoauth2?.(username, auth.accessToken ?? '') === true;
      record(accepted);
      if (accepted) return callback(null, { user: username });
      callback(null, { data: XOAUTH2_CHALLENGE });
      // smtp-server answers the client's empty line with a fixed text of its own; replace it
      // with the provider's, since senders map "5.7.3" to a remedy.
      const conn = connectionOf(server, session);
      if (conn) conn._nextHandler = answerWith(XOAUTH2_FAILURE);
      return;
    }
    const expected = opts.users?.[username];
    const accepted = expected !== undefined && expected === auth.password;
    record(accepted);
    return accepted ? callback(null, { user: username }) : callback(smtpError(PASSWORD_FAILURE));
  };

  const server: SMTPServer = new SMTPServer({
    ...baseOptions(security, opts.cert ?? testCa(), authMethods.length > 0),
    ...(authMethods.length ? { authMethods } : {}),
    ...(opts.maxSize ? { size: opts.maxSize } : {}),
    onAuth,
    onConnect(session, callback) {
      const conn = connectionOf(server, session);
      if (conn) multiLineReplies(conn);
      callback();
    },
    onRcptTo(address, session, callback) {
      decide({ phase: 'rcpt', from: fromOf(session), rcpt: address.address, user: userOf(session) }).then(
        (r) => callback(r && r.code >= 400 ? smtpError(r) : null),
        (err: Error) => callback(err),
      );
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.once('error', (err) => callback(err));
      stream.once('end', () => {
        const raw = Buffer.concat(chunks);
        const envelope = { from: fromOf(session), to: session.envelope.rcptTo.map((r) => r.address) };
        const auth = authBySession.get(session.id);
        const attempt = ++offered;
        if (stream.sizeExceeded) {
          return callback(smtpError({ code: 552, message: `5.3.4 Message size exceeds fixed limit of ${opts.maxSize}` }));
        }
        decide({ phase: 'data', ...envelope, raw, user: auth?.user, attempt })
          .then(async (r) => {
            if (r && r.code >= 400) return callback(smtpError(r));
            const parsed = await simpleParser(raw);
            const mailFromArgs = (session.envelope.mailFrom || undefined)?.args || {};
            messages.push({ envelope, mailFromArgs, raw, parsed, secure: session.secure, ...(auth ? { user: auth.user, authMethod: auth.method } : {}) });
            changes.notify();
            callback(null, r?.message);
          })
          .catch((err: Error) => callback(err));
      });
    },
    onClose(session) {
      authBySession.delete(session.id);
    },
  });
  server.on('error', (err) => errors.push(err));
  server.server.on('connection', () => connections++);
  const port = await listen(server, opts.port ?? 0);

  return {
    host: '127.0.0.1',
    port,
    messages,
    authAttempts,
    errors,
    get connections() {
      return connections;
    },
    waitForMessages(n, timeoutMs = 10_000) {
      return changes.until(
        () => (messages.length >= n ? [...messages] : undefined),
        timeoutMs,
        () => new Error(`expected ${n} message(s) within ${timeoutMs} ms, but ${messages.length} arrived`),
      );
    },
    dropConnections: () => dropClients(server.connections),
    close: once(() => closeSmtp(server)),
  };
}

function connectionOf(server: SMTPServer, session: SMTPServerSession): SmtpConnection | undefined {
  for (const c of server.connections) if (c.session === session) return c;
  return undefined;
}

function answerWith(reply: SmtpReply): SmtpConnection['_nextHandler'] {
  return function (this: SmtpConnection, _line: Buffer, done: () => void) {
    this.send(reply.code, reply.message);
    done();
  };
}
