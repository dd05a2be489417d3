import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer } from 'node:tls';
import { SmtpConnection } from './connection.js';
import { replyLine } from './reply.js';
import {
  DEFAULT_CLOSE_GRACE_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_BAD_COMMANDS,
  DEFAULT_MAX_LINE_BYTES,
  DEFAULT_MAX_RECIPIENTS,
  type SmtpHooks,
  type SmtpProtocolOptions,
} from './types.js';

export interface SmtpProtocolServer {
  /** Listens on `host:port` (0: any free port); resolves with the bound port. */
  listen(port: number, host: string): Promise<number>;
  /**
   * Stops accepting connections; idle ones get 421 4.3.2 at once, one receiving or storing a
   * message gets its reply first, within closeGraceMs, then is closed. Safe to call twice.
   */
  close(): Promise<void>;
}

export function createSmtpProtocolServer(options: SmtpProtocolOptions, hooks: SmtpHooks): SmtpProtocolServer {
  const secureContext = options.tls ? createSecureContext({ cert: options.tls.cert, key: options.tls.key }) : undefined;
  if (options.secure && !secureContext) throw new Error('SMTP protocol server: implicit TLS (secure) needs tls.cert and tls.key');
  const given = options.size;
  const size = typeof given === 'function' ? given : () => given;
  if (!(size() > 0)) throw new Error(`SMTP protocol server: size must be a positive number of bytes, got ${size()}`);
  const resolved = {
    name: options.name,
    banner: options.banner ?? '',
    size,
    auth: options.auth,
    maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    maxBadCommands: options.maxBadCommands ?? DEFAULT_MAX_BAD_COMMANDS,
    maxRecipients: options.maxRecipients ?? DEFAULT_MAX_RECIPIENTS,
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
  };
  const graceMs = options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
  const live = new Set<SmtpConnection>();
  const maxPerAddress = options.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
  const perAddress = new Map<string, number>();
  let closing = false;
  const accept = (socket: Socket) => {
    if (closing) return void socket.destroy();
    const connection = new SmtpConnection(socket, resolved, hooks, secureContext, options.secure);
    live.add(connection);
    void connection.closed.then(() => live.delete(connection));
    connection.start();
  };
  const server: Server = options.secure && options.tls ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }) : createServer();
  server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  // Every TCP connection is counted against its address, TLS handshakes on the implicit TLS port included.
  server.on('connection', (raw: Socket) => {
    const address = raw.remoteAddress ?? '';
    const open = (perAddress.get(address) ?? 0) + 1;
    if (closing || open > maxPerAddress) {
      // On the plain port the client hears why; on the TLS port nothing can be said before the handshake.
      if (!options.secure) raw.end(replyLine(421, `4.7.0 Too many connections from your address (at most ${maxPerAddress}); try again later`));
      else raw.destroy();
      return;
    }
    perAddress.set(address, open);
    raw.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
    if (!options.secure) accept(raw);
  });
  if (options.secure) server.on('secureConnection', accept);
  // A failed TLS handshake on the implicit TLS port ends that connection only.
  server.on('tlsClientError', (_err: Error, socket: Socket) => socket.destroy());
  // Accept errors (out of file descriptors, memory) are reported; they must not end the process.
  server.on('error', (err: Error) => options.onError?.(err));
  // Every TCP connection, also one still in its TLS handshake (not a SmtpConnection yet), so
  // that close() can end it once the grace period is over.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  let closed: Promise<void> | undefined;
  return {
    listen: (port, host) =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address();
          resolve(typeof address === 'object' && address ? address.port : port);
        });
      }),
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const connections = [...live];
        for (const c of connections) c.shutdown();
        const force = setTimeout(() => {
          for (const c of connections) c.destroy();
          for (const s of sockets) s.destroy();
        }, graceMs);
        await Promise.allSettled(connections.map((c) => c.closed));
        await stopped;
        clearTimeout(force);
      })();
      return closed;
    },
  };
}
