import {
  Server,
  ServerCredentials,
  status,
  type Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import {
  AdminService,
  bindGrpc,
  BeginConsentResponseSchema,
  GetMessageResponseSchema,
  MailService,
  MessageState,
  SendMailResponseSchema,
  TestSenderResponseSchema,
  toGrpcDefinition,
  ListSendersResponseSchema,
  MessageEventSchema,
  type GetMessageRequest,
  type WatchMessagesRequest,
  type SendMailRequest,
  type TestSenderRequest,
} from '@relay/proto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRelayClient, type RelayClient } from './client.js';
import { grpcCode, grpcDetails } from './errors.js';

const MAX = 200 * 1024 * 1024;

/** What the fake relay saw of each call. */
interface Seen {
  method: string;
  metadata: Metadata;
  request: unknown;
}

let server: Server;
let address: string;
let seen: Seen[] = [];

function handler<Req>(method: string, respond: (req: Req, md: Metadata) => unknown | Promise<unknown>) {
  return (call: ServerUnaryCall<Req, unknown>, cb: sendUnaryData<unknown>) => {
    seen.push({ method, metadata: call.metadata, request: call.request });
    Promise.resolve()
      .then(() => respond(call.request, call.metadata))
      .then(
        (res) => cb(null, res),
        (err: unknown) => cb(err as Error),
      );
  };
}

const mail: UntypedServiceImplementation = {
  sendMail: handler<SendMailRequest>('sendMail', async (req) => {
    if (req.subject === 'forbidden') throw { code: status.PERMISSION_DENIED, details: `key may not use sender "${req.sender}"` };
    if (req.subject === 'slow') await new Promise((r) => setTimeout(r, 500));
    const bytes = req.attachments.reduce((n, a) => n + a.content.length, 0);
    return create(SendMailResponseSchema, { messageId: `m-${req.to.length}-${bytes}`, state: MessageState.QUEUED });
  }),
  getMessage: handler<GetMessageRequest>('getMessage', (req) => {
    if (req.messageId === 'missing') throw { code: status.NOT_FOUND, details: 'no message missing' };
    return create(GetMessageResponseSchema, {
      messageId: req.messageId,
      state: MessageState.SENT,
      attempts: 1,
      sender: 'no-reply',
      history: [{ state: MessageState.QUEUED, at: timestampFromDate(new Date(0)), detail: 'accepted' }],
    });
  }),
};

const admin: UntypedServiceImplementation = {
  testSender: handler<TestSenderRequest>('testSender', (req) =>
    create(TestSenderResponseSchema, { ok: true, steps: [{ name: 'connect', ok: true, detail: `220 ${req.sender}` }] }),
  ),
  beginConsent: handler('beginConsent', () => create(BeginConsentResponseSchema, { authorizeUrl: 'https://login.example/authorize' })),
  listSenders: handler('listSenders', () => create(ListSendersResponseSchema, { senders: [{ id: 'no-reply', managedBy: 'file' }] })),
  watchMessages: (call: ServerWritableStream<WatchMessagesRequest, unknown>) => {
    seen.push({ method: 'watchMessages', metadata: call.metadata, request: call.request });
    if (call.request.sender === 'denied') {
      // grpc-js ends a server stream with an error status this way.
      call.emit('error', { code: status.PERMISSION_DENIED, details: 'not an admin key' });
      return;
    }
    for (const id of ['m1', 'm2']) call.write(create(MessageEventSchema, { messageId: id, state: MessageState.SENT, sender: call.request.sender }));
    call.end();
  },
};

beforeAll(async () => {
  server = new Server({ 'grpc.max_receive_message_length': MAX, 'grpc.max_send_message_length': MAX });
  server.addService(toGrpcDefinition(MailService), mail);
  server.addService(toGrpcDefinition(AdminService), admin);
  const port = await bindGrpc(server, '127.0.0.1:0', ServerCredentials.createInsecure());
  address = `127.0.0.1:${port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
});

beforeEach(() => {
  seen = [];
});

function withClient(fn: (client: RelayClient) => Promise<void>, apiKey = 'k-123') {
  return async () => {
    const client = createRelayClient({ address, apiKey });
    try {
      await fn(client);
    } finally {
      client.close();
    }
  };
}

describe('createRelayClient', () => {
  it(
    'sends the API key as a bearer token, extra metadata, and round-trips the message',
    withClient(async (client) => {
      const res = await client.sendMail(
        {
          sender: 'no-reply',
          to: ['a@b.example', 'c@d.example'],
          subject: 'Hi',
          text: 'hello',
          headers: { 'X-Ticket': '42' },
          attachments: [{ filename: 'a.txt', contentType: 'text/plain', content: new TextEncoder().encode('abc') }],
          sendAt: timestampFromDate(new Date('2030-01-01T00:00:00Z')),
        },
        { metadata: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } },
      );
      expect(res.messageId).toBe('m-2-3');
      expect(res.state).toBe(MessageState.QUEUED);

      const [call] = seen;
      expect(call?.method).toBe('sendMail');
      expect(call?.metadata.get('authorization')).toEqual(['Bearer k-123']);
      expect(call?.metadata.get('traceparent')).toEqual(['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']);
      const req = call?.request as SendMailRequest;
      expect(req.sender).toBe('no-reply');
      expect(req.headers).toEqual({ 'X-Ticket': '42' });
      expect(req.attachments[0]?.filename).toBe('a.txt');
      expect(req.sendAt?.seconds).toBe(BigInt(Date.parse('2030-01-01T00:00:00Z') / 1000));
    }),
  );

  it(
    'lets one call override the API key',
    withClient(async (client) => {
      await client.getMessage('m-1', { apiKey: 'other' });
      expect(seen[0]?.metadata.get('authorization')).toEqual(['Bearer other']);
    }),
  );

  it('sends no authorization header without a key', async () => {
    const client = createRelayClient({ address });
    try {
      await client.getMessage('m-1');
      expect(seen[0]?.metadata.get('authorization')).toEqual([]);
    } finally {
      client.close();
    }
  });

  it(
    'reads a message with its history',
    withClient(async (client) => {
      const res = await client.getMessage('m-9');
      expect((seen[0]!.request as GetMessageRequest).messageId).toBe('m-9');
      expect(res).toMatchObject({ messageId: 'm-9', state: MessageState.SENT, attempts: 1, sender: 'no-reply' });
      expect(res.history[0]?.detail).toBe('accepted');
    }),
  );

  it(
    'rethrows the server status as a grpc-js ServiceError',
    withClient(async (client) => {
      const err = await client.sendMail({ sender: 'billing', to: ['a@b.example'], subject: 'forbidden' }).catch((e: unknown) => e);
      expect(grpcCode(err)).toBe(status.PERMISSION_DENIED);
      expect(grpcDetails(err)).toBe('key may not use sender "billing"');
      const missing = await client.getMessage('missing').catch((e: unknown) => e);
      expect(grpcCode(missing)).toBe(status.NOT_FOUND);
    }),
  );

  it(
    'fails with DEADLINE_EXCEEDED past deadlineMs',
    withClient(async (client) => {
      const err = await client.sendMail({ sender: 'a', to: ['a@b.example'], subject: 'slow' }, { deadlineMs: 50 }).catch((e: unknown) => e);
      expect(grpcCode(err)).toBe(status.DEADLINE_EXCEEDED);
    }),
  );

  it(
    'cancels a call when its signal aborts',
    withClient(async (client) => {
      const ac = new AbortController();
      const p = client.sendMail({ sender: 'a', to: ['a@b.example'], subject: 'slow' }, { signal: ac.signal });
      setTimeout(() => ac.abort(), 20);
      expect(grpcCode(await p.catch((e: unknown) => e))).toBe(status.CANCELLED);
    }),
  );

  it(
    'sends a 70 MB message (a Graph sender takes up to 150 MiB)',
    withClient(async (client) => {
      const content = new Uint8Array(70_000_000).fill(7);
      const res = await client.sendMail({ sender: 'a', to: ['a@b.example'], subject: 'big', attachments: [{ filename: 'big.bin', content }] });
      expect(res.messageId).toBe(`m-1-${content.length}`);
    }),
  );

  it(
    'calls AdminService on the same channel',
    withClient(async (client) => {
      const test = await client.testSender({ sender: 'no-reply', to: 'me@b.example' });
      expect(test.ok).toBe(true);
      expect(test.steps[0]).toMatchObject({ name: 'connect', ok: true, detail: '220 no-reply' });
      const consent = await client.beginConsent({ sender: 'no-reply' });
      expect(consent.authorizeUrl).toBe('https://login.example/authorize');
      expect(seen.map((s) => s.method)).toEqual(['testSender', 'beginConsent']);
      expect(seen[1]?.metadata.get('authorization')).toEqual(['Bearer admin-key']);
    }, 'admin-key'),
  );

  it(
    'calls any AdminService method by its descriptor, and reads a server stream',
    withClient(async (client) => {
      const list = await client.call(AdminService.method.listSenders, { pageSize: 5 });
      expect(list.senders[0]).toMatchObject({ id: 'no-reply', managedBy: 'file' });
      const ids: string[] = [];
      for await (const ev of client.stream(AdminService.method.watchMessages, { sender: 'billing' })) ids.push(`${ev.messageId}:${ev.sender}`);
      expect(ids).toEqual(['m1:billing', 'm2:billing']);
      expect(seen.map((s) => s.method)).toEqual(['listSenders', 'watchMessages']);
      expect(seen[1]?.metadata.get('authorization')).toEqual(['Bearer k-123']);
      const denied = async () => {
        for await (const _ of client.stream(AdminService.method.watchMessages, { sender: 'denied' })) {
          // no messages before the error
        }
      };
      await expect(denied()).rejects.toMatchObject({ code: status.PERMISSION_DENIED, details: 'not an admin key' });
    }),
  );

  it('fails with UNAVAILABLE when nothing listens, and close() may be called twice', async () => {
    const client = createRelayClient({ address: '127.0.0.1:1', apiKey: 'k' });
    const err = await client.getMessage('m', { deadlineMs: 5_000 }).catch((e: unknown) => e);
    expect(grpcCode(err)).toBe(status.UNAVAILABLE);
    client.close();
    client.close();
  });
});

describe('grpcCode', () => {
  it('reads numeric status codes only', () => {
    expect(grpcCode({ code: status.UNAUTHENTICATED })).toBe(16);
    expect(grpcCode(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }))).toBeUndefined();
    expect(grpcCode({ code: 99 })).toBeUndefined();
    expect(grpcCode(undefined)).toBeUndefined();
    expect(grpcCode('UNAVAILABLE')).toBeUndefined();
  });
});
