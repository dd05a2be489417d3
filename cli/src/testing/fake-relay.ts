/**
 * An in-process relay for the CLI's tests: grpc-js serving MailService and AdminService from the
 * generated descriptors, answering each call from a handler the test sets, and recording every call.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import {
  type Metadata,
  Server,
  ServerCredentials,
  type sendUnaryData,
  type ServerUnaryCall,
  type StatusObject,
  type ServerWritableStream,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { AdminService, bindGrpc, MailService, toGrpcDefinition } from '@relay/proto';

export interface RecordedCall {
  method: string;
  request: unknown;
  authorization: string | undefined;
}

/** Thrown by a handler: the call fails with this status. */
export function grpcError(code: status, details: string): { code: status; details: string } {
  return { code, details };
}

type Handler = (req: never) => unknown;

export interface FakeRelay {
  address: string;
  calls: RecordedCall[];
  /** Sets what a method answers: a response (init shape), or throws grpcError(...). Streams return a list of messages. */
  on(method: string, handler: Handler): void;
  reset(): void;
  close(): Promise<void>;
}

export async function startFakeRelay(): Promise<FakeRelay> {
  const calls: RecordedCall[] = [];
  let handlers = new Map<string, Handler>();
  // Room for the largest message the relay takes (150 MiB for a Graph sender), as ingest has.
  const server = new Server({ 'grpc.max_receive_message_length': 200 * 1024 * 1024 });
  const serve = (service: typeof MailService | typeof AdminService): UntypedServiceImplementation => {
    const impl: UntypedServiceImplementation = {};
    for (const m of service.methods) {
      const record = (request: unknown, md: Metadata) => {
        calls.push({ method: m.localName, request, authorization: md.get('authorization')[0]?.toString() });
        const h = handlers.get(m.localName);
        if (!h) throw grpcError(status.UNIMPLEMENTED, `fake relay: no answer set for ${m.localName}`);
        return h(request as never);
      };
      if (m.methodKind === 'server_streaming') {
        impl[m.localName] = (call: ServerWritableStream<unknown, unknown>) => {
          Promise.resolve()
            .then(() => record(call.request, call.metadata))
            .then(
              (msgs) => {
                for (const msg of msgs as MessageInitShape<DescMessage>[]) call.write(create(m.output, msg));
                call.end();
              },
              (err: unknown) => call.emit('error', err),
            );
        };
      } else {
        impl[m.localName] = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
          Promise.resolve()
            .then(() => record(call.request, call.metadata))
            .then(
              (res) => cb(null, create(m.output, res as MessageInitShape<DescMessage>)),
              (err: unknown) => cb(err as Partial<StatusObject>),
            );
        };
      }
    }
    return impl;
  };
  server.addService(toGrpcDefinition(MailService), serve(MailService));
  server.addService(toGrpcDefinition(AdminService), serve(AdminService));
  const port = await bindGrpc(server, '127.0.0.1:0', ServerCredentials.createInsecure());
  return {
    address: `127.0.0.1:${port}`,
    calls,
    on: (method, handler) => handlers.set(method, handler),
    reset: () => {
      calls.length = 0;
      handlers = new Map();
    },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built `relay` binary (cli/dist/main.js) as a child process. The environment is only
 * what the test gives plus PATH and HOME, so the developer's own RELAY_* settings never leak in.
 */
export function runCli(args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<CliResult> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: these tests run the built CLI; run npm run build first`);
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MAIN, ...args],
      { env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', NO_COLOR: '1', ...opts.env }, timeout: 20_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(opts.stdin ?? '');
  });
}
