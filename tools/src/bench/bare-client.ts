import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { SendMailRequestSchema, SendMailResponseSchema, type SendMailResponse } from '@relay/proto';
import type { Caller } from './load.js';

/** A SendMail call that did not end with grpc-status 0. */
export class BareCallError extends Error {
  constructor(
    readonly code: number,
    details: string,
  ) {
    super(`SendMail: grpc-status ${code}${details ? `: ${details}` : ''}`);
  }
}

/**
 * The load generator's SendMail: gRPC's wire format written directly on one HTTP/2 connection
 * (the request as one length-prefixed protobuf frame, the answer's status from the trailers).
 * `@grpc/grpc-js` costs the calling process about as much CPU per call as ingest spends serving
 * it; on the benchmark's two cores that CPU is taken from the services being measured, so the
 * benchmark calls through this by default (`BENCH_CLIENT=typed` uses `@relay/client` instead).
 */
export function createBareClient(address: string, apiKey: string): Caller & { session: ClientHttp2Session; close(): void } {
  const session = connect(`http://${address}`);
  // A connection error fails the calls in progress (each sees its stream's error); nothing else to do.
  session.on('error', () => {});
  const auth = `Bearer ${apiKey}`;
  return {
    session,
    sendMail(init, opts) {
      const body = toBinary(SendMailRequestSchema, create(SendMailRequestSchema, init));
      const frame = Buffer.allocUnsafe(5 + body.length);
      frame[0] = 0; // not compressed
      frame.writeUInt32BE(body.length, 1);
      frame.set(body, 5);
      return new Promise<SendMailResponse>((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/relay.v1.MailService/SendMail',
          'content-type': 'application/grpc',
          te: 'trailers',
          authorization: auth,
          'grpc-timeout': `${Math.max(1, Math.ceil(opts.deadlineMs))}m`,
        });
        const chunks: Buffer[] = [];
        let status: IncomingHttpHeaders | undefined;
        // A trailers-only answer (an error before any message) carries grpc-status in the headers.
        stream.on('response', (h) => {
          if (h['grpc-status'] !== undefined) status = h;
        });
        stream.on('trailers', (h) => (status = h));
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('error', reject);
        stream.on('close', () => {
          const code = status ? Number(status['grpc-status']) : NaN;
          if (code !== 0) {
            const details = status?.['grpc-message'];
            reject(new BareCallError(Number.isNaN(code) ? 2 : code, typeof details === 'string' ? decodeURIComponent(details) : 'no grpc-status'));
            return;
          }
          const data = Buffer.concat(chunks);
          if (data.length < 5 || data.readUInt32BE(1) !== data.length - 5) {
            reject(new BareCallError(13, `malformed answer (${data.length} bytes)`));
            return;
          }
          resolve(fromBinary(SendMailResponseSchema, data.subarray(5)));
        });
        stream.end(frame);
      });
    },
    close() {
      session.close();
    },
  };
}
