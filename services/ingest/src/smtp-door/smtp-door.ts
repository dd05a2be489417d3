import { hostname } from 'node:os';
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { recipientRefusal, type ClientConfig, type SenderConfig } from '@relay/config';
import { describe, ErrorCode, isRelayError } from '@relay/core';
import { DEFAULT_MAX_RECIPIENTS, MAX_HEADER_BYTES, readHeaders } from '@relay/mail';
import { relayInstruments } from '@relay/telemetry';
import { acceptMessage } from '../accept.js';
import { messageLimit, type IngestContext } from '../mail-service.js';
import { flagNote, suppressedFor, suppressionRefusal } from '../suppression-check.js';
import { createSmtpGate } from './gate.js';

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
  /** The client whose allow_ips holds the peer's address, if any (AUTH takes precedence). */
  tx: Transaction | undefined;
  failedLogins: number;
  /** Between DATA and its reply: the one state a stop lets finish (smtp-server refuses new commands then). */
  receiving: boolean;
}

/** An SMTP reply for smtp-server; the enhanced status code goes at the start of `message`. */
function reply(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

/** Failed AUTH attempts a session may make before it is closed. */
const MAX_FAILED_LOGINS = 3;

/**
 * The SMTP front door: clients that only speak SMTP submit here, and a message is answered 250
 * only once JetStream has stored it, through the same step SendMail uses. A client submits only
 * as its own senders; without AUTH or an allowed source address nothing is relayed.
 *
 * Enhanced status codes are written into each reply by this door. smtp-server offers the
 * ENHANCEDSTATUSCODES keyword only together with codes of its own, chosen by reply code alone
 * (5.1.1 where the relay means 5.7.1), so the keyword and those codes stay off. It has no BDAT,
 * so CHUNKING is not offered either: clients then send with DATA (RFC 3030).
 */
export function createSmtpDoor(ctx: IngestContext, opts: SmtpDoorOptions): SmtpDoor {
  // Rebuilt when the configuration changes (relay.yaml edits, the registry).
  let view = { config: ctx.config, gate: createSmtpGate(ctx.config.clients, ctx.senders), clients: new Map(ctx.config.clients.map((c) => [c.name, c])) };
  const current = () => {
    if (view.config !== ctx.config) {
      view = { config: ctx.config, gate: createSmtpGate(ctx.config.clients, ctx.senders), clients: new Map(ctx.config.clients.map((c) => [c.name, c])) };
    }
    return view;
  };
  const sessions = new Map<string, SessionState>();
  const name = opts.name ?? hostname();
  const maxSize = Math.max(ctx.config.limits.maxMessageBytes, ...ctx.config.senders.map((s) => messageLimit(ctx.config, s)));
  const servers: SMTPServer[] = [];
  const tracer = trace.getTracer('campus-relay');

  const endTx = (st: SessionState | undefined, error?: string) => {
    if (!st?.tx) return;
    if (error) st.tx.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    st.tx.span.end();
    st.tx = undefined;
  };

  const options = (port: 'submission' | 'smtps'): SMTPServerOptions => ({
    name,
    banner: 'Campus Relay',
    logger: false,
    secure: port === 'smtps',
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
    // AUTH only over TLS (see onConnect); a printer from an allowed address may send without
    // it, so the door, not smtp-server, decides who must log in.
    allowInsecureAuth: false,
    authOptional: true,
    authMethods: ['PLAIN', 'LOGIN'],
    size: maxSize,
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: true,
    hideDSN: true,
    closeTimeout: opts.graceMs,
    onConnect(session, callback) {
      relayInstruments().smtpSessions.add(1, { port });
      sessions.set(session.id, { tx: undefined, receiving: false, failedLogins: 0 });
      // AUTH is neither offered nor taken before TLS, so a client never sends its password in
      // clear text (it would, offered AUTH, before the refusal); onSecure offers it.
      if (!session.secure) session.disabledCommands = ['AUTH'];
      callback();
    },
    onSecure(_socket, session, callback) {
      session.disabledCommands = undefined;
      callback();
    },
    onClose(session) {
      endTx(sessions.get(session.id), 'connection closed before the message was stored');
      sessions.delete(session.id);
    },
    onAuth(auth, session, callback) {
      const client = auth.username && auth.password ? current().gate.login(auth.username, auth.password) : undefined;
      if (!client) {
        ctx.logger.info({ smtp_session: session.id, remote: session.remoteAddress, user: auth.username }, 'smtp auth refused');
        const st = sessions.get(session.id);
        // Password guessing costs a new connection every few tries (a 421 closes this one).
        if (st && ++st.failedLogins >= MAX_FAILED_LOGINS) return callback(reply(421, '4.7.0 Too many failed authentication attempts; closing'));
        return callback(reply(535, '5.7.8 Authentication credentials invalid'));
      }
      callback(null, { user: client.name });
    },
    onMailFrom(address, session, callback) {
      callback(startTransaction(address, session));
    },
    onRcptTo(address, session, callback) {
      const tx = sessions.get(session.id)?.tx;
      const max = tx?.sender.rate?.maxRecipientsPerMessage ?? DEFAULT_MAX_RECIPIENTS;
      if (tx && session.envelope.rcptTo.length >= max) {
        return callback(reply(452, `4.5.3 Too many recipients: sender "${tx.sender.id}" takes at most ${max} per message`));
      }
      // Refused now rather than bounced later (Microsoft High Volume Email delivers inside the tenant only).
      const refusal = tx && recipientRefusal(tx.sender, address.address);
      if (refusal) return callback(reply(550, `5.7.1 Recipient ${refusal}`));
      const bounced = tx?.client.suppression?.mode === 'refuse' ? suppressedFor(ctx.suppressions, tx.client, address.address) : undefined;
      if (tx && bounced)
        return callback(reply(550, `5.1.1 Recipient ${suppressionRefusal(tx.client, address.address, bounced, ctx.bus.names.suppressedBucket)}`));
      callback();
    },
    onData(stream, session, callback) {
      const st = sessions.get(session.id);
      if (st) st.receiving = true;
      receive(stream, session)
        .finally(() => {
          if (st) st.receiving = false;
        })
        .then(
          (message) => callback(null, message),
          (err: Error) => callback(err),
        );
    },
  });

  function startTransaction(address: SMTPServerAddress, session: SMTPServerSession): Error | undefined {
    const st = sessions.get(session.id);
    if (!st) return reply(421, '4.3.0 Session state lost; reconnect');
    endTx(st, 'transaction abandoned');
    // Looked up per transaction: a client removed or changed since the connection opened is in force at once.
    const client = typeof session.user === 'string' ? current().clients.get(session.user) : current().gate.byAddress(session.remoteAddress);
    if (!client) return reply(530, '5.7.0 Authentication required');
    const sender = current().gate.senderFor(client, address.address);
    if (!sender) {
      return reply(550, `5.7.1 Sender address <${address.address}> is not one of client "${client.name}"'s senders (a sender's from or smtp_aliases)`);
    }
    const limit = messageLimit(ctx.config, sender);
    const declared = address.args ? Number(address.args.SIZE ?? 0) : 0;
    if (declared > limit) return reply(552, `5.3.4 Message size ${declared} exceeds the limit of sender "${sender.id}" (${limit} bytes)`);
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
    return undefined;
  }

  async function receive(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const st = sessions.get(session.id);
    const tx = st?.tx;
    if (!st || !tx) {
      stream.resume();
      throw reply(503, '5.5.1 No transaction in progress (MAIL FROM first)');
    }
    try {
      // The Received line goes in front of the client's bytes as they are read: one buffer, no copy.
      const received = Buffer.from(receivedHeader(session, name), 'latin1');
      const rawMime = await readLimited(stream, tx.limit, received);
      if (!rawMime) throw reply(552, `5.3.4 Message exceeds the limit of sender "${tx.sender.id}" (${tx.limit} bytes)`);
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
      const smtp = err as Error & { responseCode?: number };
      if (smtp.responseCode) {
        endTx(st, smtp.message);
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

  const listen = (server: SMTPServer, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(port, opts.host, () => {
        server.server.off('error', reject);
        const a = server.server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });

  let stopped: Promise<void> | undefined;
  return {
    async start() {
      const ports: { smtp?: number; smtps?: number } = {};
      if (opts.port !== undefined) {
        const s = new SMTPServer(options('submission'));
        servers.push(s);
        ports.smtp = await listen(s, opts.port);
      }
      if (opts.smtpsPort !== undefined) {
        const s = new SMTPServer(options('smtps'));
        servers.push(s);
        ports.smtps = await listen(s, opts.smtpsPort);
      }
      return ports;
    },
    stop() {
      stopped ??= Promise.allSettled(
        servers.map((s) => {
          const closed = new Promise<void>((resolve) => s.close(() => resolve()));
          // Sessions go now, but one whose message is being received or stored gets the grace
          // period to get its reply (smtp-server answers any further command 421 meanwhile).
          for (const c of s.connections) {
            if (sessions.get(c.session.id)?.receiving) continue;
            c.send(421, '4.3.2 Service shutting down');
            c.close();
          }
          return closed;
        }),
      ).then(() => undefined);
      return stopped;
    },
  };
}

/**
 * `prefix` and the message's bytes, or undefined once the message grew past `limit`: from then on
 * the rest is read and dropped rather than buffered, so a client cannot make the door hold more
 * than the limit.
 */
function readLimited(stream: SMTPServerDataStream, limit: number, prefix: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [prefix];
    let size = 0;
    let over = false;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (over) return;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    stream.once('error', reject);
    stream.once('end', () => resolve(over ? undefined : Buffer.concat(chunks, prefix.length + size)));
  });
}

/** RFC 5321 trace field: who handed the message over, how (ESMTPSA & co., RFC 3848), when. */
function receivedHeader(session: SMTPServerSession, name: string): string {
  const helo = (session.hostNameAppearsAs || 'unknown').replace(/[^\x21-\x7e]/g, '?').slice(0, 255);
  const ip = session.remoteAddress.replace(/^::ffff:/, '');
  const date = new Date().toUTCString().replace(/GMT$/, '+0000');
  return `Received: from ${helo} ([${ip}])\r\n\tby ${name} (Campus Relay) with ${session.transmissionType};\r\n\t${date}\r\n`;
}
