import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import { DotDecoder, MessageSink } from './message.js';
import { hasNonAscii, parsePathCommand, type SmtpAddress } from './parse.js';
import { isSmtpReply, replyLine } from './reply.js';
import { type SaslStep, startSasl } from './sasl.js';
import type { SmtpCredentials, SmtpHooks, SmtpMessage, SmtpSession } from './types.js';

const LF = 10;
const CR = 13;

/** Options with every default filled in. */
export interface ConnectionOptions {
  name: string;
  banner: string;
  size: () => number;
  auth: boolean;
  maxLineBytes: number;
  maxBadCommands: number;
  maxRecipients: number;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
}

interface Transaction {
  mailFrom: SmtpAddress;
  rcptTo: SmtpAddress[];
  maxSize: number;
  utf8: boolean;
  /** How the message is being sent, once DATA or the first BDAT came. */
  via: 'DATA' | 'BDAT' | undefined;
  sink: MessageSink | undefined;
}

/** The BDAT chunk being read: its octets are consumed even when it is refused (RFC 3030). */
interface Chunk {
  size: number;
  remaining: number;
  last: boolean;
  keep: boolean;
  refusal: [number, string] | undefined;
}

type Mode = 'command' | 'data' | 'bdat' | 'closed';

function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function';
}

/**
 * One SMTP server connection (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
 * ENHANCEDSTATUSCODES, CHUNKING, STARTTLS and AUTH PLAIN/LOGIN). Input is read into a queue of
 * buffers and worked off one command at a time; while a hook runs, the socket is paused and the
 * rest waits, so replies go out in command order.
 */
export class SmtpConnection implements SmtpSession {
  readonly id = randomBytes(8).toString('hex');
  readonly remoteAddress: string;
  secure: boolean;
  hostNameAppearsAs = '';
  user: string | undefined;
  /** Resolves when the socket has closed and onClose ran. */
  readonly closed: Promise<void>;

  private socket: Socket;
  private readonly raw: Socket;
  private esmtp = false;
  private tx: Transaction | undefined;
  private mode: Mode = 'command';
  private readonly queue: Buffer[] = [];
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private overlong = false;
  private busy = true;
  private pumping = false;
  /** Waiting for the client to read replies written so far. */
  private draining = false;
  private upgrading = false;
  private authStep: ((line: string) => void) | undefined;
  private decoder = new DotDecoder();
  private chunk: Chunk | undefined;
  private badCommands = 0;
  private closing = false;
  /** A message is being received or stored: a shutdown lets it get its reply. */
  private inMessage = false;
  private markClosed!: () => void;
  private closedOnce = false;

  constructor(
    socket: Socket,
    private readonly opts: ConnectionOptions,
    private readonly hooks: SmtpHooks,
    private readonly secureContext: SecureContext | undefined,
    secure: boolean,
  ) {
    this.socket = socket;
    this.raw = socket;
    this.secure = secure;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.closed = new Promise((resolve) => {
      this.markClosed = resolve;
    });
  }

  get transmissionType(): string {
    if (!this.esmtp) return 'SMTP';
    return `${this.tx?.utf8 ? 'UTF8SMTP' : 'ESMTP'}${this.secure ? 'S' : ''}${this.user !== undefined ? 'A' : ''}`;
  }

  get envelope(): SmtpSession['envelope'] {
    return { mailFrom: this.tx?.mailFrom ?? false, rcptTo: this.tx?.rcptTo ?? [] };
  }

  start(): void {
    this.raw.setNoDelay(true);
    this.attach(this.socket);
    this.call(
      () => this.hooks.onConnect?.(this),
      () => {
        this.write(`220 ${this.opts.name} ESMTP ${this.opts.banner}\r\n`);
        this.busy = false;
        this.resume();
      },
      (err) => {
        this.refuse(err);
        this.close();
      },
    );
  }

  /** Server shutdown: an idle connection gets 421 now, one in the middle of a message after its reply. */
  shutdown(): void {
    this.closing = true;
    if (!this.inMessage && !this.busy && !this.upgrading) {
      this.reply(421, '4.3.2 Service shutting down');
      this.close();
    }
  }

  destroy(): void {
    this.socket.destroy();
    this.raw.destroy();
  }

  private attach(socket: Socket): undefined {
    socket.on('data', this.onData);
    socket.on('error', () => this.destroy());
    socket.once('close', this.onClose);
    // A listener of its own (setTimeout's callback would be called once only).
    socket.on('timeout', this.onTimeout);
    socket.setTimeout(this.opts.idleTimeoutMs);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.mode === 'closed') return;
    this.queue.push(chunk);
    this.guard(() => this.pump());
  };

  private readonly onTimeout = (): void => {
    if (this.mode === 'closed') return;
    // A hook still at work (storing a message) is not the client's idleness: wait another period.
    if (this.busy) {
      this.socket.setTimeout(this.opts.idleTimeoutMs);
      return;
    }
    this.reply(421, '4.4.2 Idle timeout; closing the connection');
    this.close();
  };

  private readonly onClose = (): void => {
    if (this.closedOnce) return;
    this.closedOnce = true;
    this.mode = 'closed';
    this.raw.destroy();
    try {
      this.hooks.onClose?.(this);
    } catch {
      // The connection is gone either way; a failing hook must not take the process with it.
    } finally {
      this.markClosed();
    }
  };

  private pump(): undefined {
    if (this.pumping) return;
    this.pumping = true;
    this.socket.cork();
    try {
      // Replies the client does not read stop the reading of its commands (no unbounded output).
      while (!this.busy && !this.upgrading && this.mode !== 'closed' && !this.draining) {
        if (this.socket.writableNeedDrain) {
          this.draining = true;
          this.socket.once('drain', this.onDrain);
          break;
        }
        const buf = this.queue.shift();
        if (!buf) break;
        const rest = this.consume(buf);
        if (rest !== undefined && rest.length > 0) this.queue.unshift(rest);
      }
    } finally {
      this.pumping = false;
      this.socket.uncork();
    }
    if (this.upgrading) this.upgrade();
    else if (this.busy || this.draining) this.socket.pause();
  }

  private readonly onDrain = (): void => {
    this.draining = false;
    this.resume();
  };

  private resume(): undefined {
    if (this.mode === 'closed' || this.upgrading) return;
    if (this.closing && !this.inMessage) {
      this.reply(421, '4.3.2 Service shutting down');
      return this.close();
    }
    this.socket.resume();
    this.pump();
  }

  /** Works off `buf` in the current mode; returns what is left of it for the next mode. */
  private consume(buf: Buffer): Buffer | undefined {
    if (this.mode === 'data') {
      const sink = this.tx!.sink!;
      const end = this.decoder.push(buf, sink.add);
      if (end === -1) return undefined;
      this.mode = 'command';
      this.endMessage();
      return buf.subarray(end);
    }
    if (this.mode === 'bdat') {
      const chunk = this.chunk!;
      const n = Math.min(chunk.remaining, buf.length);
      if (chunk.keep) this.tx!.sink!.add(buf.subarray(0, n));
      chunk.remaining -= n;
      if (chunk.remaining === 0) {
        this.mode = 'command';
        this.endChunk();
      }
      return buf.subarray(n);
    }
    return this.readLine(buf);
  }

  private readLine(buf: Buffer): Buffer | undefined {
    const lf = buf.indexOf(LF);
    if (lf === -1) {
      // Never more than one line's worth held: past the limit the rest of the line is dropped.
      if (!this.overlong && this.partialBytes + buf.length > this.opts.maxLineBytes + 1) {
        this.overlong = true;
        this.partial = [];
        this.partialBytes = 0;
      }
      if (!this.overlong) {
        this.partial.push(buf);
        this.partialBytes += buf.length;
      }
      return undefined;
    }
    const rest = buf.subarray(lf + 1);
    let line: Buffer | undefined;
    if (this.overlong) {
      this.overlong = false;
    } else if (this.partial.length > 0) {
      line = Buffer.concat([...this.partial, buf.subarray(0, lf)]);
      this.partial = [];
      this.partialBytes = 0;
    } else {
      line = buf.subarray(0, lf);
    }
    const end = line && line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : (line?.length ?? 0);
    if (!line || end > this.opts.maxLineBytes) {
      this.authStep = undefined;
      this.bad(500, `5.5.6 Line too long (at most ${this.opts.maxLineBytes} bytes)`);
    } else {
      this.command(line.toString('utf8', 0, end));
    }
    return rest;
  }

  private command(line: string): undefined {
    if (this.authStep) {
      const step = this.authStep;
      this.authStep = undefined;
      step(line);
      return;
    }
    const sp = line.indexOf(' ');
    const verb = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp === -1 ? '' : line.slice(sp + 1).trim();
    if (this.closing && !this.inMessage && verb !== 'QUIT') {
      this.reply(421, '4.3.2 Service shutting down');
      return this.close();
    }
    switch (verb) {
      case 'EHLO':
      case 'HELO':
        return this.hello(verb, arg);
      case 'MAIL':
        return this.mail(arg);
      case 'RCPT':
        return this.rcpt(arg);
      case 'DATA':
        return this.data(arg);
      case 'BDAT':
        return this.bdat(arg);
      case 'RSET':
        this.reset();
        return this.reply(250, '2.0.0 OK');
      case 'NOOP':
        return this.reply(250, '2.0.0 OK');
      case 'VRFY':
        return this.reply(252, '2.1.5 Cannot VRFY the user; send the message and delivery will be attempted');
      case 'HELP':
        return this.reply(214, '2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT STARTTLS AUTH');
      case 'QUIT':
        this.reply(221, '2.0.0 Bye');
        return this.close();
      case 'STARTTLS':
        return this.starttls(arg);
      case 'AUTH':
        return this.auth(arg);
      case 'EXPN':
      case 'TURN':
      case 'ETRN':
        return this.bad(502, '5.5.1 Command not implemented');
      default:
        return this.bad(500, '5.5.2 Command not recognized');
    }
  }

  private hello(verb: 'EHLO' | 'HELO', arg: string): undefined {
    const host = arg.split(' ')[0] ?? '';
    if (!host) return this.bad(501, `5.5.4 Syntax: ${verb} hostname`);
    // A new EHLO or HELO starts over (RFC 5321 4.1.4).
    this.reset();
    this.hostNameAppearsAs = host;
    this.esmtp = verb === 'EHLO';
    const greeting = `${this.opts.name} Hello [${this.remoteAddress.replace(/^::ffff:/, '')}]`;
    if (!this.esmtp) return this.write(`250 ${greeting}\r\n`);
    const lines = [greeting, 'PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', `SIZE ${this.opts.size()}`];
    if (!this.secure && this.secureContext) lines.push('STARTTLS');
    if (this.secure && this.opts.auth && this.hooks.onAuth) lines.push('AUTH PLAIN LOGIN');
    this.write(lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join(''));
  }

  private mail(arg: string): undefined {
    if (!this.hostNameAppearsAs) return this.bad(503, '5.5.1 Send EHLO or HELO first');
    if (this.tx) return this.bad(503, '5.5.1 A transaction is already in progress (RSET first)');
    let from: SmtpAddress;
    try {
      from = parsePathCommand(arg, 'FROM');
    } catch (err) {
      return this.badReply(err);
    }
    let declared = 0;
    for (const [key, value] of Object.entries(from.args)) {
      if (!this.esmtp) return this.bad(555, `5.5.4 MAIL parameters need EHLO (got ${key})`);
      switch (key) {
        case 'SIZE':
          if (typeof value !== 'string' || !/^\d{1,20}$/.test(value)) return this.bad(501, '5.5.4 SIZE takes a number of bytes');
          declared = Number(value);
          break;
        case 'BODY': {
          const body = typeof value === 'string' ? value.toUpperCase() : '';
          if (body !== '7BIT' && body !== '8BITMIME') return this.bad(555, `5.5.4 BODY=${body.slice(0, 20)} is not supported (7BIT or 8BITMIME)`);
          break;
        }
        case 'SMTPUTF8':
          if (value !== true) return this.bad(555, '5.5.4 SMTPUTF8 takes no value');
          break;
        case 'AUTH':
          // RFC 4954 5: taken and ignored; the relay goes by the connection's own login.
          break;
        default:
          return this.bad(555, `5.5.4 Unsupported MAIL parameter ${key.slice(0, 20)}`);
      }
    }
    const utf8 = from.args.SMTPUTF8 === true;
    if (!utf8 && hasNonAscii(from.address)) return this.bad(553, '5.6.7 A non-ASCII address needs the SMTPUTF8 parameter');
    const size = this.opts.size();
    if (declared > size) return this.reply(552, `5.3.4 Message size ${declared} exceeds the maximum message size of ${size} bytes`);
    this.call(
      () => this.hooks.onMailFrom?.(from, this),
      (limits) => {
        const maxSize = Math.min(size, limits?.maxSize ?? size);
        this.tx = { mailFrom: from, rcptTo: [], maxSize, utf8, via: undefined, sink: undefined };
        this.reply(250, '2.1.0 Sender OK');
      },
    );
  }

  private rcpt(arg: string): undefined {
    const tx = this.tx;
    if (!tx) return this.bad(503, '5.5.1 MAIL FROM first');
    if (tx.via) return this.bad(503, '5.5.1 RCPT after the message started');
    let to: SmtpAddress;
    try {
      to = parsePathCommand(arg, 'TO');
    } catch (err) {
      return this.badReply(err);
    }
    const param = Object.keys(to.args)[0];
    if (param) return this.bad(555, `5.5.4 Unsupported RCPT parameter ${param.slice(0, 20)}`);
    if (!tx.utf8 && hasNonAscii(to.address)) return this.bad(553, '5.6.7 A non-ASCII address needs MAIL FROM with SMTPUTF8');
    if (tx.rcptTo.length >= this.opts.maxRecipients) return this.reply(452, `4.5.3 Too many recipients (at most ${this.opts.maxRecipients})`);
    this.call(
      () => this.hooks.onRcptTo?.(to, this),
      () => {
        tx.rcptTo.push(to);
        this.reply(250, '2.1.5 Recipient OK');
      },
    );
  }

  private data(arg: string): undefined {
    const tx = this.tx;
    if (arg) return this.bad(501, '5.5.4 Syntax: DATA (no parameters)');
    if (!tx) return this.bad(503, '5.5.1 MAIL FROM first');
    if (tx.via === 'BDAT') return this.bad(503, '5.5.1 DATA after BDAT in the same transaction (RSET first)');
    if (tx.rcptTo.length === 0) return this.bad(554, '5.5.1 No valid recipients');
    tx.via = 'DATA';
    tx.sink = new MessageSink(tx.maxSize);
    this.decoder = new DotDecoder();
    this.inMessage = true;
    this.mode = 'data';
    this.write('354 End data with <CR><LF>.<CR><LF>\r\n');
  }

  private bdat(arg: string): undefined {
    const m = /^(\d{1,15})(?: +(LAST))?$/i.exec(arg);
    if (!m) {
      // Without a valid size the rest of the input cannot be framed: the connection ends.
      this.reply(501, '5.5.4 Syntax: BDAT <octets> [LAST]; closing the connection');
      return this.close();
    }
    const size = Number(m[1]);
    const last = m[2] !== undefined;
    const tx = this.tx;
    let refusal: [number, string] | undefined;
    if (!tx) refusal = [503, '5.5.1 No transaction in progress (MAIL FROM first)'];
    else if (tx.rcptTo.length === 0) refusal = [554, '5.5.1 No valid recipients'];
    let keep = false;
    if (tx && !refusal) {
      tx.via = 'BDAT';
      tx.sink ??= new MessageSink(tx.maxSize);
      this.inMessage = true;
      // Checked before reading: a chunk that would take the message past its limit is not buffered.
      keep = !tx.sink.exceeded && !tx.sink.wouldExceed(size);
      if (!keep) tx.sink.overflow(size);
    }
    this.chunk = { size, remaining: size, last, keep, refusal };
    if (size === 0) this.endChunk();
    else this.mode = 'bdat';
  }

  private endChunk(): undefined {
    const chunk = this.chunk!;
    this.chunk = undefined;
    if (chunk.refusal) return this.bad(...chunk.refusal);
    // Over the limit, the message is answered (552) now rather than after more chunks.
    if (chunk.last || this.tx!.sink!.exceeded) return this.endMessage();
    this.reply(250, `2.0.0 ${chunk.size} octets received`);
  }

  private endMessage(): undefined {
    const tx = this.tx!;
    const sink = tx.sink!;
    const message: SmtpMessage = { chunks: sink.chunks, size: sink.size, exceeded: sink.exceeded, via: tx.via! };
    this.call(
      () => this.hooks.onMessage(message, this),
      (text) => {
        if (sink.exceeded) this.reply(552, `5.3.4 Message exceeds the maximum message size of ${tx.maxSize} bytes`);
        else this.reply(250, text || '2.0.0 OK');
        this.endTransaction();
      },
      (err) => {
        this.refuse(err);
        this.endTransaction();
      },
    );
  }

  private endTransaction(): undefined {
    this.tx = undefined;
    if (!this.inMessage) return;
    this.inMessage = false;
    // Shutting down: the message got its reply, the connection goes.
    if (this.closing) {
      this.reply(421, '4.3.2 Service shutting down');
      this.close();
    }
  }

  /** Drops the transaction in progress, if any. */
  private reset(): undefined {
    if (!this.tx) return;
    this.endTransaction();
    this.hooks.onReset?.(this);
  }

  private starttls(arg: string): undefined {
    if (this.secure) return this.bad(503, '5.5.1 TLS is already active');
    if (!this.secureContext) return this.bad(502, '5.5.1 STARTTLS is not offered');
    if (arg) return this.bad(501, '5.5.4 Syntax: STARTTLS (no parameters)');
    this.reply(220, '2.0.0 Ready to start TLS');
    this.upgrading = true;
  }

  /** After the 220 went out: TLS on the raw socket; nothing the client sent after STARTTLS in plain text is kept. */
  private upgrade(): undefined {
    // Lines pipelined behind STARTTLS in plain text would otherwise run as if they came over TLS
    // (command injection, CVE-2011-0411).
    this.queue.length = 0;
    this.partial = [];
    this.partialBytes = 0;
    this.overlong = false;
    const plain = this.socket;
    plain.removeListener('data', this.onData);
    plain.removeListener('close', this.onClose);
    plain.removeListener('timeout', this.onTimeout);
    plain.setTimeout(0);
    const secure = new TLSSocket(plain, { isServer: true, secureContext: this.secureContext });
    this.socket = secure;
    this.attach(secure);
    // A handshake that does not finish ends the connection (the idle timer would wait minutes).
    const handshake = setTimeout(() => this.destroy(), this.opts.handshakeTimeoutMs);
    handshake.unref();
    secure.once('close', () => clearTimeout(handshake));
    secure.once('secure', () =>
      this.guard(() => {
        clearTimeout(handshake);
        this.secure = true;
        // RFC 3207 4.2: nothing the client said before TLS counts after it.
        this.reset();
        this.hostNameAppearsAs = '';
        this.esmtp = false;
        this.user = undefined;
        this.upgrading = false;
        this.hooks.onSecure?.(this);
        this.resume();
      }),
    );
  }

  private auth(arg: string): undefined {
    if (!this.opts.auth || !this.hooks.onAuth) return this.bad(500, '5.5.2 Command not recognized');
    // Never offered in plain text, so no password crosses the network unencrypted a second time.
    if (!this.secure) return this.bad(500, '5.5.2 Command not recognized: AUTH is offered only after STARTTLS');
    if (!this.esmtp) return this.bad(503, '5.5.1 Send EHLO first');
    if (this.user !== undefined) return this.bad(503, '5.5.1 Already authenticated');
    if (this.tx) return this.bad(503, '5.5.1 AUTH is not allowed during a mail transaction');
    const [mechanism = '', initial, extra] = arg.split(' ');
    if (extra !== undefined) return this.bad(501, '5.5.4 Syntax: AUTH mechanism [initial-response]');
    return this.sasl(startSasl(mechanism, initial));
  }

  private sasl(step: SaslStep): undefined {
    if (step.kind === 'refuse') return this.bad(step.code, step.text);
    if (step.kind === 'credentials') return this.login(step.credentials);
    this.write(`334 ${step.text}\r\n`);
    this.authStep = (line) => this.sasl(step.next(line));
  }

  private login(credentials: SmtpCredentials): undefined {
    const onAuth = this.hooks.onAuth!;
    this.call(
      () => onAuth(credentials, this),
      ({ user }) => {
        this.user = user;
        this.reply(235, '2.7.0 Authentication successful');
      },
    );
  }

  /**
   * Runs a hook and hands its result to `done`; a thrown SmtpReply is the answer. While an async
   * hook runs, input waits (PIPELINING: one command at a time, replies in order).
   */
  private call<T>(hook: () => T | PromiseLike<T>, done: (value: T) => void, failed: (err: unknown) => void = (err) => this.refuse(err)): void {
    let result: T | PromiseLike<T>;
    try {
      result = hook();
    } catch (err) {
      this.guard(() => failed(err));
      return;
    }
    if (!isThenable(result)) {
      this.guard(() => done(result));
      return;
    }
    this.busy = true;
    this.socket.pause();
    Promise.resolve(result)
      .then(
        (value) => {
          this.busy = false;
          done(value);
        },
        (err: unknown) => {
          this.busy = false;
          failed(err);
        },
      )
      .then(() => this.resume())
      .catch(() => this.destroy());
  }

  /** Runs `fn`; should it throw (a defect), this connection ends instead of the process. */
  private guard(fn: () => void): undefined {
    try {
      fn();
    } catch {
      this.destroy();
    }
  }

  private refuse(err: unknown): undefined {
    if (isSmtpReply(err)) {
      this.reply(err.code, err.message);
      if (err.code === 421) this.close();
      return;
    }
    this.reply(451, '4.3.0 Local error; try again later');
  }

  private badReply(err: unknown): undefined {
    if (isSmtpReply(err)) this.bad(err.code, err.message);
    else this.refuse(err);
  }

  /** A refused command of the client's making: too many of them close the connection. */
  private bad(code: number, text: string): undefined {
    if (++this.badCommands > this.opts.maxBadCommands) {
      this.reply(421, '4.7.0 Too many bad commands; closing the connection');
      return this.close();
    }
    this.reply(code, text);
  }

  private reply(code: number, text: string): undefined {
    this.write(replyLine(code, text));
  }

  private write(text: string): undefined {
    if (this.mode !== 'closed' && this.socket.writable) this.socket.write(text);
  }

  /** Sends what was written, then ends the connection. */
  private close(): undefined {
    if (this.mode === 'closed') return;
    this.mode = 'closed';
    this.authStep = undefined;
    this.queue.length = 0;
    this.socket.end();
    setTimeout(() => this.destroy(), 2_000).unref();
  }
}
