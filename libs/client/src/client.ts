import { create, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import {
  credentials as grpcCredentials,
  makeGenericClientConstructor,
  Metadata,
  type CallOptions as GrpcCallOptions,
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  type MethodDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  AdminService,
  BeginConsentRequestSchema,
  GetMessageRequestSchema,
  MailService,
  SendMailRequestSchema,
  TestSenderRequestSchema,
  toGrpcDefinition,
  type BeginConsentResponse,
  type GetMessageResponse,
  type SendMailResponse,
  type TestSenderResponse,
} from '@relay/proto';

const MiB = 1024 * 1024;

/**
 * Default largest message the client sends or accepts, 160 MiB (grpc-js's own default is 4 MiB).
 * The relay takes up to 150 MiB for a Graph sender (35 MiB by default) plus protobuf framing, so a
 * message the relay would take is never refused by the client's own limit.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 160 * MiB;

export interface RelayClientOptions {
  /** host:port of the ingest service. */
  address: string;
  /** Sent as `authorization: Bearer <apiKey>` on every call unless a call overrides it. */
  apiKey?: string;
  /** true: TLS with the system's trusted CAs; `{ ca }`: also trust this PEM CA. Default plaintext. */
  tls?: boolean | { ca?: string };
  /** Largest request or response in bytes; default DEFAULT_MAX_MESSAGE_BYTES. */
  maxMessageBytes?: number;
}

export interface CallOptions {
  /** Time the call may take, in milliseconds; past it the call fails with DEADLINE_EXCEEDED. */
  deadlineMs?: number;
  /** Extra metadata, e.g. a W3C `traceparent`. */
  metadata?: Record<string, string>;
  /** Overrides the client's API key for this call. */
  apiKey?: string;
  /** Cancels the call (it then fails with CANCELLED). */
  signal?: AbortSignal;
}

export interface RelayClient {
  sendMail(req: MessageInitShape<typeof SendMailRequestSchema>, opts?: CallOptions): Promise<SendMailResponse>;
  getMessage(messageId: string, opts?: CallOptions): Promise<GetMessageResponse>;
  testSender(req: MessageInitShape<typeof TestSenderRequestSchema>, opts?: CallOptions): Promise<TestSenderResponse>;
  beginConsent(req: MessageInitShape<typeof BeginConsentRequestSchema>, opts?: CallOptions): Promise<BeginConsentResponse>;
  /** Any unary MailService or AdminService method, e.g. `call(AdminService.method.listSenders, {})`. */
  call<I extends DescMessage, O extends DescMessage>(method: UnaryMethod<I, O>, req: MessageInitShape<I>, opts?: CallOptions): Promise<MessageShape<O>>;
  /**
   * A server-streaming method, e.g. `stream(AdminService.method.watchMessages, {})`: its messages as
   * they come; the iteration ends when the server ends the call and throws its status on error.
   */
  stream<I extends DescMessage, O extends DescMessage>(
    method: StreamMethod<I, O>,
    req: MessageInitShape<I>,
    opts?: CallOptions,
  ): AsyncIterable<MessageShape<O>>;
  /** Closes the channel; calls in flight fail with CANCELLED. Safe to call twice. */
  close(): void;
}

export type UnaryMethod<I extends DescMessage, O extends DescMessage> = DescMethod & { methodKind: 'unary'; input: I; output: O };
export type StreamMethod<I extends DescMessage, O extends DescMessage> = DescMethod & { methodKind: 'server_streaming'; input: I; output: O };

type Method = MethodDefinition<unknown, unknown>;

const mailDef = toGrpcDefinition(MailService);
const adminDef = toGrpcDefinition(AdminService);
const MailClient = makeGenericClientConstructor(mailDef, 'MailService');
const AdminClient = makeGenericClientConstructor(adminDef, 'AdminService');
const methods = {
  sendMail: methodOf(mailDef, 'sendMail'),
  getMessage: methodOf(mailDef, 'getMessage'),
  testSender: methodOf(adminDef, 'testSender'),
  beginConsent: methodOf(adminDef, 'beginConsent'),
};

/**
 * A client for relay.v1.MailService and relay.v1.AdminService over one channel. Failed calls reject
 * with the grpc-js ServiceError as it came (`code` is a grpc `status`); see `grpcCode`.
 */
export function createRelayClient(options: RelayClientOptions): RelayClient {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const channelOptions: ClientOptions = {
    'grpc.max_send_message_length': maxBytes,
    'grpc.max_receive_message_length': maxBytes,
  };
  const mail = new MailClient(options.address, channelCredentials(options.tls), channelOptions);
  // The admin client rides on the mail client's channel: one connection, one close.
  const admin = new AdminClient(options.address, channelCredentials(options.tls), { ...channelOptions, channelOverride: mail.getChannel() });

  const call = <Res>(client: Client, method: Method, req: unknown, opts: CallOptions = {}) =>
    unary<Res>(client, method, req, metadataFor(options.apiKey, opts), callOptionsFor(opts), opts.signal);
  const resolve = (desc: DescMethod): { client: Client; method: Method } => {
    const [client, def] = desc.parent.typeName === MailService.typeName ? [mail, mailDef] : [admin, adminDef];
    if (desc.parent.typeName !== MailService.typeName && desc.parent.typeName !== AdminService.typeName) {
      throw new Error(`@relay/client: ${desc.parent.typeName}.${desc.name} is not a MailService or AdminService method`);
    }
    return { client, method: methodOf(def, desc.localName) };
  };

  return {
    sendMail: (req, opts) => call<SendMailResponse>(mail, methods.sendMail, create(SendMailRequestSchema, req), opts),
    getMessage: (messageId, opts) => call<GetMessageResponse>(mail, methods.getMessage, create(GetMessageRequestSchema, { messageId }), opts),
    testSender: (req, opts) => call<TestSenderResponse>(admin, methods.testSender, create(TestSenderRequestSchema, req), opts),
    beginConsent: (req, opts) => call<BeginConsentResponse>(admin, methods.beginConsent, create(BeginConsentRequestSchema, req), opts),
    call: (desc, req, opts) => {
      const { client, method } = resolve(desc);
      return call(client, method, create(desc.input, req), opts);
    },
    stream: (desc, req, opts = {}) => {
      const { client, method } = resolve(desc);
      return serverStream(client, method, create(desc.input, req), metadataFor(options.apiKey, opts), callOptionsFor(opts), opts.signal);
    },
    close: () => mail.close(),
  };
}

function methodOf(def: Record<string, Method>, name: string): Method {
  const m = def[name];
  if (!m) throw new Error(`@relay/client: the generated service has no method ${name}; regenerate @relay/proto`);
  return m;
}

function channelCredentials(tls: RelayClientOptions['tls']): ChannelCredentials {
  if (!tls) return grpcCredentials.createInsecure();
  const ca = typeof tls === 'object' && tls.ca ? Buffer.from(tls.ca) : undefined;
  return grpcCredentials.createSsl(ca);
}

function metadataFor(clientKey: string | undefined, opts: CallOptions): Metadata {
  const md = new Metadata();
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
  const key = opts.apiKey ?? clientKey;
  if (key) md.set('authorization', `Bearer ${key}`);
  return md;
}

function callOptionsFor(opts: CallOptions): GrpcCallOptions {
  return opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs };
}

function unary<Res>(client: Client, method: Method, req: unknown, metadata: Metadata, options: GrpcCallOptions, signal: AbortSignal | undefined): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => pending.cancel();
    const pending = client.makeUnaryRequest<unknown, Res>(
      method.path,
      method.requestSerialize,
      method.responseDeserialize as (value: Buffer) => Res,
      req,
      metadata,
      options,
      (err: ServiceError | null, res?: Res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(res as Res);
      },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function* serverStream<Res>(
  client: Client,
  method: Method,
  req: unknown,
  metadata: Metadata,
  options: GrpcCallOptions,
  signal: AbortSignal | undefined,
): AsyncGenerator<Res> {
  if (signal?.aborted) throw signal.reason;
  const call = client.makeServerStreamRequest<unknown, Res>(
    method.path,
    method.requestSerialize,
    method.responseDeserialize as (value: Buffer) => Res,
    req,
    metadata,
    options,
  );
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    // grpc-js's stream is a Readable in object mode: iterating it yields messages and throws the status.
    for await (const msg of call) yield msg as Res;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // A consumer that stops early (break, return) ends the call on the server too.
    call.cancel();
  }
}
