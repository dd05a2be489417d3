import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import { SendMailRequestSchema } from '@relay/proto';

const CHUNK = Buffer.alloc(1024 * 1024, 0x61);

/**
 * The framing of a SendMail request whose one attachment holds `contentBytes` bytes, without the
 * attachment's content: the content follows as `contentBytes` bytes of CHUNK. Lets a test send a
 * large, valid request while holding only one megabyte itself.
 */
function largeSendMailPrefix(contentBytes: number): Buffer {
  const head = Buffer.from(toBinary(SendMailRequestSchema, create(SendMailRequestSchema, { sender: 'registrar', to: ['a@campus.example'], subject: 'flood' })));
  const filename = Buffer.from('big.bin');
  const varint = (n: number) => {
    const out: number[] = [];
    while (n > 0x7f) {
      out.push((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    out.push(n);
    return Buffer.from(out);
  };
  // Attachment { filename = 1; content = 3 }, as field 9 of SendMailRequest.
  const attachmentHead = Buffer.concat([Buffer.from([0x0a]), varint(filename.length), filename, Buffer.from([0x1a]), varint(contentBytes)]);
  const attachmentLength = attachmentHead.length + contentBytes;
  const message = Buffer.concat([head, Buffer.from([0x4a]), varint(attachmentLength), attachmentHead]);
  const frame = Buffer.alloc(5);
  frame.writeUInt32BE(message.length + contentBytes, 1);
  return Buffer.concat([frame, message]);
}

export interface FloodResult {
  /** grpc-status of each call, as a number. */
  codes: number[];
}

/**
 * Sends `calls` SendMail requests of `bytes` each at once over one HTTP/2 connection, with the
 * given authorization header (or none), and resolves with each call's gRPC status.
 */
export async function floodSendMail(address: string, opts: { calls: number; bytes: number; authorization?: string }): Promise<FloodResult> {
  // Room for the bodies queued on this side: Node's default would reset the flood's own streams.
  const session: ClientHttp2Session = connect(`http://${address}`, { maxSessionMemory: 1024 });
  session.on('error', () => {});
  try {
    const codes = await Promise.all(Array.from({ length: opts.calls }, () => oneCall(session, opts.bytes, opts.authorization)));
    return { codes };
  } finally {
    session.close();
  }
}

function oneCall(session: ClientHttp2Session, bytes: number, authorization: string | undefined): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const headers: Record<string, string> = {
      ':method': 'POST',
      ':path': '/relay.v1.MailService/SendMail',
      'content-type': 'application/grpc',
      te: 'trailers',
    };
    if (authorization) headers.authorization = authorization;
    const req = session.request(headers);
    let code: number | undefined;
    const finish = () => {
      if (code === undefined) reject(new Error('the call ended without a grpc-status'));
      else resolve(code);
    };
    const take = (h: Record<string, unknown>) => {
      if (h['grpc-status'] !== undefined) code = Number(h['grpc-status']);
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('error', () => {});
    req.on('close', finish);
    req.resume();
    void (async () => {
      // An attacker does not stop at the answer: it sends the whole body unless the server stops it.
      if (!req.write(largeSendMailPrefix(bytes))) await drained(req);
      for (let sent = 0; sent < bytes && !req.destroyed && !req.closed; sent += CHUNK.length) {
        const piece = sent + CHUNK.length <= bytes ? CHUNK : CHUNK.subarray(0, bytes - sent);
        if (!req.write(piece)) await drained(req);
      }
      if (!req.destroyed && !req.closed) req.end();
    })().catch(() => {});
  });
}

function drained(req: ClientHttp2Stream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      req.off('drain', done);
      req.off('close', done);
      resolve();
    };
    req.on('drain', done);
    req.on('close', done);
  });
}
