import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { credentials, makeGenericClientConstructor, Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import {
  AdminService,
  CancelMessagesRequestSchema,
  GetMessageRequestSchema,
  GetQueueStatsRequestSchema,
  ListMessagesRequestSchema,
  RetryMessagesRequestSchema,
  MailService,
  SendMailRequestSchema,
  TestSenderRequestSchema,
  toGrpcDefinition,
  type CancelMessagesResponse,
  type GetMessageResponse,
  type GetQueueStatsResponse,
  type ListMessagesResponse,
  type RetryMessagesResponse,
  type SendMailRequest,
  type SendMailResponse,
  type TestSenderResponse,
} from '@relay/proto';

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const DEFAULT_DEADLINE_MS = 15_000;

/** A failed call, with the gRPC status code the relay answered. */
export class RpcError extends Error {
  override name = 'RpcError';
  readonly code: status;
  readonly details: string;
  constructor(err: ServiceError) {
    super(`${status[err.code] ?? err.code}: ${err.details}`, { cause: err });
    this.code = err.code;
    this.details = err.details;
  }
}

export interface CallOptions {
  /** Overrides the client's key for this call; null sends no authorization header at all. */
  apiKey?: string | null;
  deadlineMs?: number;
  /** A W3C traceparent sent as call metadata, as a traced caller would. */
  traceparent?: string;
}

/** The fields of a SendMail request, as a plain object (nested messages as plain objects too). */
export type SendMailInit = Exclude<MessageInitShape<typeof SendMailRequestSchema>, SendMailRequest>;

export interface TestClient {
  sendMail(req: SendMailInit, opts?: CallOptions): Promise<SendMailResponse>;
  getMessage(messageId: string, opts?: CallOptions): Promise<GetMessageResponse>;
  testSender(req: MessageInitShape<typeof TestSenderRequestSchema>, opts?: CallOptions): Promise<TestSenderResponse>;
  listMessages(req: MessageInitShape<typeof ListMessagesRequestSchema>, opts?: CallOptions): Promise<ListMessagesResponse>;
  retryMessages(req: MessageInitShape<typeof RetryMessagesRequestSchema>, opts?: CallOptions): Promise<RetryMessagesResponse>;
  cancelMessages(req: MessageInitShape<typeof CancelMessagesRequestSchema>, opts?: CallOptions): Promise<CancelMessagesResponse>;
  /** Any unary AdminService call by its local name (e.g. `putSender`), with a request made by `create(…Schema, …)`. */
  admin<Res>(method: string, req: unknown, opts?: CallOptions): Promise<Res>;
  getQueueStats(req: MessageInitShape<typeof GetQueueStatsRequestSchema>, opts?: CallOptions): Promise<GetQueueStatsResponse>;
  close(): void;
}

const channelOptions = { 'grpc.max_send_message_length': MAX_MESSAGE_BYTES, 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES };
const MailClient = makeGenericClientConstructor(toGrpcDefinition(MailService), 'MailService');
const AdminClient = makeGenericClientConstructor(toGrpcDefinition(AdminService), 'AdminService');

type Unary = (req: unknown, md: Metadata, opts: { deadline: Date }, cb: (err: ServiceError | null, res?: unknown) => void) => void;

/** A minimal promise-based client for the relay's public gRPC API (plaintext unless `tls` gives a CA to trust). */
export function createTestClient(address: string, apiKey?: string, tls?: { caPem: string }): TestClient {
  const creds = () => (tls ? credentials.createSsl(Buffer.from(tls.caPem)) : credentials.createInsecure());
  const mail = new MailClient(address, creds(), channelOptions);
  const admin = new AdminClient(address, creds(), channelOptions);

  function call<Res>(client: Client, method: string, req: unknown, opts: CallOptions = {}): Promise<Res> {
    const md = new Metadata();
    const key = opts.apiKey === undefined ? apiKey : opts.apiKey;
    if (key) md.set('authorization', `Bearer ${key}`);
    if (opts.traceparent) md.set('traceparent', opts.traceparent);
    const deadline = new Date(Date.now() + (opts.deadlineMs ?? DEFAULT_DEADLINE_MS));
    const fn = (client as unknown as Record<string, Unary>)[method];
    if (!fn) throw new Error(`no method ${method}`);
    return new Promise<Res>((resolve, reject) => {
      fn.call(client, req, md, { deadline }, (err, res) => (err ? reject(new RpcError(err)) : resolve(res as Res)));
    });
  }

  return {
    sendMail: (req, opts) => call(mail, 'sendMail', create(SendMailRequestSchema, req), opts),
    getMessage: (messageId, opts) => call(mail, 'getMessage', create(GetMessageRequestSchema, { messageId }), opts),
    testSender: (req, opts) => call(admin, 'testSender', create(TestSenderRequestSchema, req), opts),
    listMessages: (req, opts) => call(admin, 'listMessages', create(ListMessagesRequestSchema, req), opts),
    retryMessages: (req, opts) => call(admin, 'retryMessages', create(RetryMessagesRequestSchema, req), opts),
    cancelMessages: (req, opts) => call(admin, 'cancelMessages', create(CancelMessagesRequestSchema, req), opts),
    admin: (method, req, opts) => call(admin, method, req, opts),
    getQueueStats: (req, opts) => call(admin, 'getQueueStats', create(GetQueueStatsRequestSchema, req), opts),
    close() {
      mail.close();
      admin.close();
    },
  };
}

/** The status code a call failed with; throws if it succeeded. */
export async function codeOf(p: Promise<unknown>): Promise<{ code: status; details: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return { code: err.code, details: err.details };
    throw err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

export { status };
