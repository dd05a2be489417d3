import { createServer, type Socket } from 'node:net';
import { ServerCredentials, ServerInterceptingCall, status, type Server, type ServerInterceptor } from '@grpc/grpc-js';
import { toGrpcError } from '@relay/proto';
import type { Logger } from '@relay/telemetry';
import type { Authenticator } from './auth.js';

/** Streams one connection may have open at once. */
export const MAX_CONCURRENT_STREAMS = 64;

/**
 * Checks the caller's key as soon as the call's metadata arrives. A refused call ends before
 * grpc-js starts reading its body, so a caller without a key cannot make ingest buffer a message.
 * Calls to paths `guarded` says no to (health checks) pass through.
 */
export function createKeyInterceptor(auth: Authenticator, guarded: (path: string) => boolean): ServerInterceptor {
  return (method, call) => {
    if (!guarded(method.path)) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, pass) {
            try {
              auth.authenticate(metadata);
            } catch (err) {
              const e = toGrpcError(err);
              call.sendStatus({ code: e.code ?? status.UNAUTHENTICATED, details: e.details ?? '', metadata: e.metadata ?? null });
              return;
            }
            pass(metadata);
          },
        });
      },
    });
  };
}

export interface GrpcTls {
  cert: Buffer;
  key: Buffer;
}

export interface GrpcListenOptions {
  host: string;
  port: number;
  tls: GrpcTls | undefined;
  /** Connections one peer address may hold open; 0 for no limit. */
  maxConnectionsPerPeer: number;
  logger: Logger;
}

export interface GrpcListener {
  port: number;
  /** Stops accepting connections; the gRPC server's own shutdown ends the open ones. */
  close(): Promise<void>;
}

/**
 * Listens for the gRPC server on a socket of its own, so that each peer's open connections can be
 * counted and one peer cannot hold every connection (connections go to grpc-js through its
 * connection injector).
 */
export async function listenGrpc(server: Server, opts: GrpcListenOptions): Promise<GrpcListener> {
  const credentials = opts.tls
    ? ServerCredentials.createSsl(null, [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }], false)
    : ServerCredentials.createInsecure();
  const injector = server.createConnectionInjector(credentials);
  const perPeer = new Map<string, number>();
  let refusedLogged = false;
  const listener = createServer((socket: Socket) => {
    const peer = socket.remoteAddress ?? '';
    const open = perPeer.get(peer) ?? 0;
    if (opts.maxConnectionsPerPeer > 0 && open >= opts.maxConnectionsPerPeer) {
      if (!refusedLogged)
        opts.logger.warn({ peer, limit: opts.maxConnectionsPerPeer }, 'refusing connections over the per-peer limit (RELAY_GRPC_MAX_CONNECTIONS_PER_PEER)');
      refusedLogged = true;
      socket.destroy();
      return;
    }
    perPeer.set(peer, open + 1);
    socket.once('close', () => {
      const left = (perPeer.get(peer) ?? 1) - 1;
      if (left > 0) perPeer.set(peer, left);
      else perPeer.delete(peer);
    });
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(opts.port, opts.host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  const address = listener.address();
  return {
    port: typeof address === 'object' && address ? address.port : opts.port,
    close: () => new Promise<void>((resolve) => listener.close(() => resolve())),
  };
}
