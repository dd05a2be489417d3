import type { handleUnaryCall, Server, ServerCredentials, ServerErrorResponse, ServerUnaryCall } from '@grpc/grpc-js';
import type { InFlight } from '@relay/core';
import { toGrpcError } from './status.js';

export interface UnaryOptions {
  /** Counts each call as work in flight, so that a stop can wait for it. */
  inFlight?: InFlight;
  /** Told of each call that failed, with the status it is answered with. */
  onError?: (err: unknown, answer: ServerErrorResponse, call: ServerUnaryCall<unknown, unknown>) => void;
}

/** A grpc-js unary handler from an async function: its result is the answer, what it throws goes out through toGrpcError. */
export function unary<Req, Res>(fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>, opts: UnaryOptions = {}): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const answer = async () => {
      try {
        callback(null, await fn(call));
      } catch (err) {
        const e = toGrpcError(err);
        opts.onError?.(err, e, call);
        callback(e);
      }
    };
    void (opts.inFlight ? opts.inFlight.run(answer) : answer());
  };
}

/** Binds `server` to `address` (`host:port`, port 0 for any free one); resolves with the port. */
export function bindGrpc(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}
