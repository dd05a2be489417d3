import { hostname } from 'node:os';
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { recipientRefusal, type ClientConfig, type SenderConfig } from '@relay/config';
import { describe, ErrorCode, isRelayError } from '@relay/core';
import { DEFAULT_MAX_RECIPIENTS, MAX_HEADER_BYTES, readHeaders } from '@relay/mail';
import { relayInstruments } from '@relay/telemetry';
import { acceptMessage } from '../accept.js';
import { messageLimit, type IngestContext } from '../mail-service.js';
import { flagNote, suppressedFor, suppressionRefusal } from '../suppression-check.js';
import { createSmtpGate, digest } from './gate.js';
import {
  createSmtpProtocolServer,
  type SmtpAddress,
  type SmtpHooks,
  type SmtpMessage,
  type SmtpProtocolServer,
  SmtpReply,
  type SmtpSession,
} from './protocol/index.js';

export interface SmtpDoorOptions {
  host: string;
  /** Submission with STARTTLS (587); undefined: not opened, 0: any free port. */
  port: number | undefined;
  /** Implicit TLS (465); undefined: not opened. */
  smtpsPort: number | undefined;
  /** PEM certificate chain and key; required when either port is opened. */
  tls: { cert: string | Buffer; key: string | Buffer } | undefined;
  /** How long stop() lets a transaction in progress finish before its connection is closed. */
  graceMs: number;
  /** The name in the greeting and in Received headers. */
  name?: string;
  /** Failed logins from one address within 15 minutes after which its AUTH is refused until they age out (default 10). */
  loginFailuresPerAddress?: number;
}

export interface SmtpDoor {
  /** Opens the configured ports; resolves with the bound ones. */
  start(): Promise<{ smtp?: number; smtps?: number }>;
  /** Stops accepting connections, lets transactions in progress finish; safe to call twice. */
  stop(): Promise<void>;
}

interface Transaction {
  client: ClientConfig;
  sender: SenderConfig;
  limit: number;
  span: Span;
}

interface SessionState {
  /** The transaction in progress, from an accepted MAIL FROM to the reply to its message. */
  tx: Transaction | undefined;
  failedLogins: number;
  /** The digest of the credentials this session logged in with: checked again at each MAIL FROM. */
  login?: Buffer;
}

/** An SMTP reply; the enhanced status code goes at the start of `message`. */
function reply(code: number, message: string): SmtpReply {
  return new SmtpReply(code, message);
}

/** How long failed logins from an address count against it. */
const LOGIN_FAILURE_WINDOW_MS = 15 * 60_000;
/** Addresses whose failed logins are remembered at once; past it the oldest are forgotten. */
const MAX_ADDRESSES_TRACKED = 10_000;

/** Failed AUTH attempts a session may make before it is closed. */
const MAX_FAILED_LOGINS = 3;

/**
 * The SMTP front door: clients that only speak SMTP submit here, and a message is answered 250
 * only once JetStream has stored it, through the same step SendMail uses. A client submits only
 * as its own senders; without AUTH or an allowed source address nothing is relayed.
 *
 * The SMTP protocol itself (PIPELINING, CHUNKING, STARTTLS, AUTH, ENHANCEDSTATUSCODES) is the
 * protocol/ module's; this door decides who may send what, and writes the enhanced status code
 * into each of its replies.
 */
export function createSmtpDoor(ctx: IngestContext, opts: SmtpDoorOptions): SmtpDoor {
  // Rebuilt when the configuration changes (relay.yaml edits, the registry).
  const viewOf = (config: IngestContext['config']) => ({
    config,
    gate: createSmtpGate(config.clients, ctx.senders),
    clients: new Map(config.clients.map((c) => [c.name, c])),
    // Advertised as SIZE: the largest limit of any sender (each sender's own is enforced).
    maxSize: Math.max(config.limits.maxMessageBytes, ...config.senders.map((s) => messageLimit(config, s))),
  });
  let view = viewOf(ctx.config);
  const current = () => {
    if (view.config !== ctx.config) view = viewOf(ctx.config);
    return view;
  };
  const sessions = new Map<string, SessionState>();
  const name = opts.name ?? hostname();
  const servers: SmtpProtocolServer[] = [];
  const tracer = trace.getTracer('campus-relay');

  const endTx = (st: SessionState | undefined, error?: string) => {
    if (!st?.tx) return;
    if (error) st.tx.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    st.tx.span.end();
    st.tx = undefined;
  };

  const maxFailuresPerAddress = opts.loginFailuresPerAddress ?? 10;
  const failures = new Map<string, { count: number; since: number }>();
  const recentFailures = (address: string) => {
    const f = failures.get(address);
    if (f && Date.now() - f.since > LOGIN_FAILURE_WINDOW_MS) {
      failures.delete(address);
      return undefined;
    }
    return f;
  };
  const countFailure = (address: string) => {
    const f = recentFailures(address);
    if (f) return void f.count++;
    if (failures.size >= MAX_ADDRESSES_TRACKED) failures.delete(failures.keys().next().value!);
    failures.set(address, { count: 1, since: Date.now() });
  };

  const hooks = (port: 'submission' | 'smtps'): SmtpHooks => ({
    onConnect(session) {
      relayInstruments().smtpSessions.add(1, { port });
      sessions.set(session.id, { tx: undefined, failedLogins: 0 });
    },
    onClose(session) {
      endTx(sessions.get(session.id), 'connection closed before the message was stored');
      sessions.delete(session.id);
    },
    onReset(session) {
      endTx(sessions.get(session.id), 'transaction abandoned');
    },
    onAuth(auth, session) {
      // Guessing over many connections: an address with too many recent failures is not heard.
      const failed = recentFailures(session.remoteAddress);
      if (failed && failed.count >= maxFailuresPerAddress) {
        const minutes = Math.max(1, Math.ceil((failed.since + LOGIN_FAILURE_WINDOW_MS - Date.now()) / 60_000));
        throw reply(421, `4.7.0 Too many failed logins from your address; try again in ${minutes} minute${minutes === 1 ? '' : 's'}`);
      }
      const client = auth.username && auth.password ? current().gate.login(auth.username, auth.password) : undefined;
      if (!client) {
        ctx.logger.info({ smtp_session: session.id, remote: session.remoteAddress, user: auth.username }, 'smtp auth refused');
        countFailure(session.remoteAddress);
        const st = sessions.get(session.id);
        // Password guessing costs a new connection every few tries (a 421 closes this one).
        if (st && ++st.failedLogins >= MAX_FAILED_LOGINS) throw reply(421, '4.7.0 Too many failed authentication attempts; closing');
        throw reply(535, '5.7.8 Authentication credentials invalid');
      }
      const st = sessions.get(session.id);
      if (st) st.login = digest(auth.username, auth.password);
      return { user: client.name };
    },
    onMailFrom(address, session) {
      return { maxSize: startTransaction(address, session) };
    },
    onRcptTo(address, session) {
      const tx = sessions.get(session.id)?.tx;
      const max = tx?.sender.rate?.maxRecipientsPerMessage ?? DEFAULT_MAX_RECIPIENTS;
      if (tx && session.envelope.rcptTo.length >= max) {
        throw reply(452, `4.5.3 Too many recipients: sender "${tx.sender.id}" takes at most ${max} per message`);
      }
      // Refused now rather than bounced later (Microsoft High Volume Email delivers inside the tenant only).
      const refusal = tx && recipientRefusal(tx.sender, address.address);
      if (refusal) throw reply(550, `5.7.1 Recipient ${refusal}`);
      const bounced = tx?.client.suppression?.mode === 'refuse' ? suppressedFor(ctx.suppressions, tx.client, address.address) : undefined;
      if (tx && bounced) throw reply(550, `5.1.1 Recipient ${suppressionRefusal(tx.client, address.address, bounced, ctx.bus.names.suppressedBucket)}`);
    },
    onMessage: (message, session) => receive(message, session),
  });

  /** Starts the door's side of a transaction; returns the sender's size limit, or throws the refusal. */
  function startTransaction(address: SmtpAddress, session: SmtpSession): number {
    const st = sessions.get(session.id);
    if (!st) throw reply(421, '4.3.0 Session state lost; reconnect');
    endTx(st, 'transaction abandoned');
    // Looked up per transaction: a client removed or changed since the connection opened is in force at once.
    const client = typeof session.user === 'string' ? current().clients.get(session.user) : current().gate.byAddress(session.remoteAddress);
    // A password changed or removed since this session logged in no longer sends: the client signs in again.
    if (typeof session.user === 'string' && !(st.login && current().gate.holds(session.user, st.login))) {
      throw reply(421, '4.7.0 The credentials this session signed in with are no longer valid; reconnect and sign in again');
    }
    if (!client) throw reply(530, '5.7.0 Authentication required');
    const sender = current().gate.senderFor(client, address.address);
    if (!sender) {
      throw reply(550, `5.7.1 Sender address <${address.address}> is not one of client "${client.name}"'s senders (a sender's from or smtp_aliases)`);
    }
    const limit = messageLimit(ctx.config, sender);
    const declared = typeof address.args.SIZE === 'string' ? Number(address.args.SIZE) : 0;
    if (declared > limit) throw reply(552, `5.3.4 Message size ${declared} exceeds the limit of sender "${sender.id}" (${limit} bytes)`);
    const span = tracer.startSpan('smtp submit', {
      kind: SpanKind.SERVER,
      attributes: {
        'relay.door': 'smtp',
        'relay.client': client.name,
        'relay.sender': sender.id,
        'client.address': session.remoteAddress,
        'network.transport': 'tcp',
      },
    });
    st.tx = { client, sender, limit, span };
    return limit;
  }

  async function receive(message: SmtpMessage, session: SmtpSession): Promise<string> {
    const st = sessions.get(session.id);
    const tx = st?.tx;
    if (!st || !tx) throw reply(503, '5.5.1 No transaction in progress (MAIL FROM first)');
    try {
      // The protocol layer stopped keeping bytes at the sender's limit (onMailFrom's maxSize).
      if (message.exceeded) throw reply(552, `5.3.4 Message exceeds the limit of sender "${tx.sender.id}" (${tx.limit} bytes)`);
      // The Received line goes in front of the client's bytes: one copy of the message.
      const received = Buffer.from(receivedHeader(session, name), 'latin1');
      const rawMime = Buffer.concat([received, ...message.chunks], received.length + message.size);
      const head = readHeaders(rawMime.subarray(received.length));
      if (head.truncated) throw reply(552, `5.3.4 The header section is longer than ${MAX_HEADER_BYTES} bytes`);
      if (head.from.length === 0) throw reply(550, "5.7.1 The message has no From header; it must name one of the sender's addresses");
      // Sender and Resent-* claim an author too: they must be the sender's as well.
      for (const [field, list] of [
        ['From', head.from],
        ['Sender or Resent-*', head.onBehalf],
      ] as const) {
        for (const a of list) {
          if (current().gate.senderFor(tx.client, a)?.id !== tx.sender.id) {
            throw reply(550, `5.7.1 ${field} header address <${a}> is not an address of sender "${tx.sender.id}" (its from or smtp_aliases)`);
          }
        }
      }
      const rcpts = session.envelope.rcptTo.map((r) => r.address);
      // Graph sends to the recipients in the headers: each must be one the envelope names (and counts).
      if (tx.sender.transport === 'graph') {
        const envelope = new Set(rcpts.map((r) => r.toLowerCase()));
        const extra = head.recipients.find((r) => !envelope.has(r));
        if (extra)
          throw reply(
            550,
            `5.7.1 Header recipient <${extra}> is not among the RCPT TO addresses; sender "${tx.sender.id}" sends through Microsoft Graph, which mails every header recipient`,
          );
      }
      const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      const flagged = rcpts.flatMap((address) => {
        const entry = suppressedFor(ctx.suppressions, tx.client, address);
        return entry ? [{ address, entry }] : [];
      });
      const note = flagged.length > 0 ? flagNote(flagged) : undefined;
      const accepted = await context.with(trace.setSpan(context.active(), tx.span), () =>
        acceptMessage(ctx, {
          client: tx.client,
          sender: tx.sender,
          door: 'smtp',
          ...(note ? { note } : {}),
          message: {
            to: rcpts,
            subject: head.subject,
            rawMime,
            envelopeTo: rcpts,
            envelopeFrom: mailFrom,
            recipientCount: rcpts.length,
            sizeBytes: BigInt(rawMime.length),
          },
        }),
      );
      endTx(st);
      if (note)
        ctx.logger.warn({ message_id: accepted.messageId, client: tx.client.name, sender: tx.sender.id }, `accepted with ${note} (suppression.mode: flag)`);
      return `2.0.0 OK ${accepted.messageId} queued`;
    } catch (err) {
      if (err instanceof SmtpReply) {
        endTx(st, err.message);
        throw err;
      }
      const unavailable = isRelayError(err) && err.code === ErrorCode.Unavailable;
      const exhausted = isRelayError(err) && err.code === ErrorCode.ResourceExhausted;
      ctx.logger[unavailable || exhausted ? 'warn' : 'error']({ err, sender: tx.sender.id, client: tx.client.name }, 'smtp message not stored');
      endTx(st, describe(err));
      // A client's rate or quota, or the store's limit: the message names it.
      if (exhausted) throw reply(452, `4.3.1 The message was not stored: ${err.message}; try again later`);
      throw reply(
        451,
        unavailable
          ? '4.3.0 The message was not stored (message broker unavailable); try again later'
          : '4.3.0 The message was not stored (local error); try again later',
      );
    }
  }

  const server = (port: 'submission' | 'smtps') =>
    createSmtpProtocolServer(
      {
        name,
        banner: 'Campus Relay',
        secure: port === 'smtps',
        ...(opts.tls ? { tls: opts.tls } : {}),
        size: () => current().maxSize,
        // AUTH only over TLS (the protocol layer neither offers nor takes it before), so a client
        // never sends its password in clear text; a printer from an allowed address may send
        // without it, so the door, not the protocol layer, decides who must log in.
        auth: true,
        closeGraceMs: opts.graceMs,
        onError: (err) => ctx.logger.warn({ err: describe(err), port }, 'smtp door could not accept a connection'),
      },
      hooks(port),
    );

  let stopped: Promise<void> | undefined;
  return {
    async start() {
      const ports: { smtp?: number; smtps?: number } = {};
      if (opts.port !== undefined) {
        const s = server('submission');
        servers.push(s);
        ports.smtp = await s.listen(opts.port, opts.host);
      }
      if (opts.smtpsPort !== undefined) {
        const s = server('smtps');
        servers.push(s);
        ports.smtps = await s.listen(opts.smtpsPort, opts.host);
      }
      return ports;
    },
    stop() {
      // Sessions go now, but one whose message is being received or stored gets the grace
      // period to get its reply (see SmtpProtocolServer.close).
      stopped ??= Promise.allSettled(servers.map((s) => s.close())).then(() => undefined);
      return stopped;
    },
  };
}

/** RFC 5321 trace field: who handed the message over, how (ESMTPSA & co., RFC 3848), when. */
function receivedHeader(session: SmtpSession, name: string): string {
  const helo = (session.hostNameAppearsAs || 'unknown').replace(/[^\x21-\x7e]/g, '?').slice(0, 255);
  const ip = session.remoteAddress.replace(/^::ffff:/, '');
  const date = new Date().toUTCString().replace(/GMT$/, '+0000');
  return `Received: from ${helo} ([${ip}])\r\n\tby ${name} (Campus Relay) with ${session.transmissionType};\r\n\t${date}\r\n`;
}
