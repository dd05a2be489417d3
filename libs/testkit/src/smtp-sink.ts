import { SMTPServer } from 'smtp-server';
import { once } from '@relay/core';
import { baseOptions, closeSmtp, listen, type SmtpSecurity } from './smtp-common.js';
import { testCa, type CertPair } from './tls.js';
import { Changes } from './wait.js';

export interface SmtpSinkOptions {
  /** Default 'none'. */
  security?: SmtpSecurity;
  cert?: CertPair;
  /** Offer AUTH and accept any credentials, so a sender configured with a password works. */
  acceptAnyAuth?: boolean;
  /** Default 0: any free port. Always on 127.0.0.1. */
  port?: number;
}

export interface SmtpSink {
  host: '127.0.0.1';
  port: number;
  /** Messages accepted so far. */
  readonly count: number;
  /** Bytes of message data accepted so far. */
  readonly bytes: number;
  readonly connections: number;
  /** Resolves with the count once at least `n` messages were accepted. */
  waitForCount(n: number, timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
}

/** An SMTP server for benchmarks: accepts everything and only counts, storing nothing. */
export async function startSmtpSink(opts: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const changes = new Changes();
  let count = 0;
  let bytes = 0;
  let connections = 0;
  const auth = opts.acceptAnyAuth === true;
  const server = new SMTPServer({
    ...baseOptions(opts.security ?? 'none', opts.cert ?? testCa(), auth),
    // Senders that were configured with credentials may still send without them.
    authOptional: true,
    onAuth(a, _session, callback) {
      callback(null, { user: a.username ?? 'anonymous' });
    },
    onData(stream, _session, callback) {
      stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
      stream.once('error', (err) => callback(err));
      stream.once('end', () => {
        count++;
        changes.notify();
        callback(null);
      });
    },
  });
  // A client dropping mid-handshake is no reason to crash a benchmark.
  server.on('error', () => {});
  server.server.on('connection', () => connections++);
  const port = await listen(server, opts.port ?? 0);

  return {
    host: '127.0.0.1',
    port,
    get count() {
      return count;
    },
    get bytes() {
      return bytes;
    },
    get connections() {
      return connections;
    },
    waitForCount(n, timeoutMs = 60_000) {
      return changes.until(
        () => (count >= n ? count : undefined),
        timeoutMs,
        () => new Error(`expected ${n} message(s) within ${timeoutMs} ms, but the sink counted ${count}`),
      );
    },
    close: once(() => closeSmtp(server)),
  };
}
