import { create, fromBinary, type DescMessage } from '@bufbuild/protobuf';
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { credentials, makeGenericClientConstructor, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { connectBus, readIndexRecord, type Bus } from '@relay/bus';
import { parseConfig, readEnv } from '@relay/config';
import type { RunnableService } from '@relay/core';
import { CreateApiKeyRequestSchema, PutClientRequestSchema, RevokeApiKeyRequestSchema, type CreateApiKeyResponse } from '@relay/proto';
import { AdminService, GetQueueStatsRequestSchema, MessageState, toGrpcDefinition, WatchMessagesRequestSchema, type MessageEvent } from '@relay/proto';
import { createLogger } from '@relay/telemetry';
import { clientEntry, dropBus, eventually, newClient, serviceTestEnv, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createIngest } from './ingest.js';

/** ingest in this process, on the local NATS; status events are published here as the other services would. */
const prefix = uniquePrefix('watch');
const app = newClient('app', ['a', 'b']);
const ops = newClient('ops', [], true);
const MAX_BUFFERED = 50;
const GRACE_MS = 20_000;

let ingest: RunnableService & { watches: { size: number } };
let bus: Bus;
let address: string;
const AdminClient = makeGenericClientConstructor(toGrpcDefinition(AdminService), 'AdminService');
let admin: InstanceType<typeof AdminClient>;

beforeAll(async () => {
  const env = readEnv({
    NATS_URL: testNatsUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_GRPC_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_METRICS_PORT: '0',
    RELAY_HOST: '127.0.0.1',
    RELAY_SHUTDOWN_GRACE: `${GRACE_MS}ms`,
    ...serviceTestEnv('ingest'),
  });
  const sender = (id: string) => ({ id, from: `${id}@campus.example`, transport: 'smtp', smtp: { host: '127.0.0.1', port: 2525, security: 'none' } });
  const config = parseConfig(stringify({ clients: [clientEntry(app), clientEntry(ops)], senders: [sender('a'), sender('b')] }), {});
  ingest = await createIngest({ env, config, logger: createLogger({ service: 'test', level: 'silent' }) }, { watch: { maxBuffered: MAX_BUFFERED } });
  const ports = await ingest.start();
  address = `127.0.0.1:${ports.grpc}`;
  admin = new AdminClient(address, credentials.createInsecure());
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'watch-test' });
});

afterAll(async () => {
  admin?.close();
  await ingest?.stop();
  await bus?.close();
  await dropBus(prefix);
});

const auth = (key: string | null) => {
  const md = new Metadata();
  if (key) md.set('authorization', `Bearer ${key}`);
  return md;
};

interface Watch {
  call: ClientReadableStream<MessageEvent>;
  events: MessageEvent[];
  /** Resolves once the server has subscribed (its response headers arrived). */
  started: Promise<void>;
  ended: Promise<{ code: status; details: string }>;
}

function watch(filter: Parameters<typeof create<typeof WatchMessagesRequestSchema>>[1], key: string | null = ops.apiKey): Watch {
  const call = (admin as unknown as Record<string, (req: unknown, md: Metadata) => ClientReadableStream<MessageEvent>>).watchMessages!.call(
    admin,
    create(WatchMessagesRequestSchema, filter),
    auth(key),
  );
  const events: MessageEvent[] = [];
  call.on('data', (e: MessageEvent) => events.push(e));
  const started = new Promise<void>((resolve) => call.once('metadata', () => resolve()));
  const ended = new Promise<{ code: status; details: string }>((resolve) => {
    call.on('error', (err: ServiceError) => resolve({ code: err.code, details: err.details }));
    call.on('status', (s) => s.code === status.OK && resolve({ code: s.code, details: s.details }));
  });
  return { call, events, started, ended };
}

const publish = (messageId: string, sender: string, state: MessageState, client = '', detail = '') =>
  bus.publishStatus({ messageId, sender, state, attempt: 1, detail, service: 'test', client });

/** Waits until `cond` holds (eventually's probe returns undefined while it does not). */
const until = (cond: () => boolean | Promise<boolean>) => eventually(async () => (await cond()) || undefined);

const seen = (w: Watch) => w.events.map((e) => `${e.messageId} ${MessageState[e.state]} ${e.client}`);

describe('WatchMessages', () => {
  it('refuses keys of clients that are not admins, and calls without a key, before subscribing', async () => {
    expect(await watch({}, app.apiKey).ended).toMatchObject({ code: status.PERMISSION_DENIED, details: expect.stringContaining('"app" is not an admin') });
    expect((await watch({}, null).ended).code).toBe(status.UNAUTHENTICATED);
    const stats = await new Promise<ServiceError | null>((resolve) =>
      (admin as unknown as Record<string, (r: unknown, md: Metadata, cb: (err: ServiceError | null) => void) => void>).getQueueStats!.call(
        admin,
        create(GetQueueStatsRequestSchema, {}),
        auth(app.apiKey),
        resolve,
      ),
    );
    expect(stats?.code).toBe(status.PERMISSION_DENIED);
    expect(ingest.watches.size).toBe(0);
  });

  it('sends the state changes from its start on, filtered by state, sender and client, naming the client', async () => {
    // Accepted before the watch: its client is found in the message index.
    await publish('old-1', 'a', MessageState.QUEUED, 'app');
    await publish('before-1', 'a', MessageState.SENT, 'app');
    await until(async () => (await readIndexRecord(bus, 'old-1')) !== undefined);

    const byClient = watch({ client: 'app' });
    const bySender = watch({ sender: 'b' });
    const byState = watch({ state: MessageState.SENT });
    await Promise.all([byClient.started, bySender.started, byState.started]);
    expect(ingest.watches.size).toBe(3);

    await publish('m-1', 'a', MessageState.QUEUED, 'app');
    await publish('m-1', 'a', MessageState.SENDING); // names no client
    await publish('m-2', 'b', MessageState.QUEUED, 'other');
    await publish('old-1', 'a', MessageState.SENDING); // names no client, and was accepted before the watch
    await publish('m-2', 'b', MessageState.SENT, 'other');
    await publish('m-1', 'a', MessageState.SENT, 'app');

    await until(() => byClient.events.length >= 4 && bySender.events.length >= 2 && byState.events.length >= 2);
    await new Promise((r) => setTimeout(r, 100)); // nothing more comes
    expect(seen(byClient)).toEqual(['m-1 QUEUED app', 'm-1 SENDING app', 'old-1 SENDING app', 'm-1 SENT app']);
    expect(seen(bySender)).toEqual(['m-2 QUEUED other', 'm-2 SENT other']);
    expect(seen(byState)).toEqual(['m-2 SENT other', 'm-1 SENT app']);
    expect(byClient.events[0]).toMatchObject({ sender: 'a', attempt: 1 });
    expect(byClient.events[0]?.at).toBeDefined();
    for (const w of [byClient, bySender, byState]) w.call.cancel();
    await until(() => ingest.watches.size === 0);
  });

  it('stops its subscription when the client cancels', async () => {
    const w = watch({});
    await w.started;
    expect(ingest.watches.size).toBe(1);
    w.call.cancel();
    expect((await w.ended).code).toBe(status.CANCELLED);
    await until(() => ingest.watches.size === 0);
    // Nothing is sent to a cancelled watch any more.
    await publish('after-cancel', 'a', MessageState.QUEUED, 'app');
    await new Promise((r) => setTimeout(r, 200));
    expect(w.events.map((e) => e.messageId)).not.toContain('after-cancel');
  });

  it('ends the watch of a client that does not read with RESOURCE_EXHAUSTED instead of buffering', async () => {
    const w = watch({});
    await w.started;
    w.call.pause();
    const detail = 'x'.repeat(2_000);
    // Far more than HTTP/2's flow-control windows hold, then more than the watch may buffer.
    for (let i = 0; i < 40 && ingest.watches.size > 0; i++)
      await Promise.all(Array.from({ length: 50 }, (_, j) => publish(`flood-${i}-${j}`, 'a', MessageState.SENDING, 'app', detail)));
    await until(() => ingest.watches.size === 0);
    w.call.resume();
    const end = await w.ended;
    expect(end.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(end.details).toContain('reads too slowly');
  });
});

/** grpc.reflection.v1 by hand (field numbers from its reflection.proto), on grpc-js' generic client. */
const reflectionDef = {
  serverReflectionInfo: {
    path: '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
    requestStream: true,
    responseStream: true,
    requestSerialize: (b: Uint8Array) => Buffer.from(b),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Uint8Array) => Buffer.from(b),
    responseDeserialize: (b: Buffer) => new Uint8Array(b),
  },
};

function reflect(field: 3 | 4 | 7, value: string): Promise<Uint8Array> {
  const Client = makeGenericClientConstructor(reflectionDef, 'ServerReflection');
  const client = new Client(address, credentials.createInsecure());
  // No key: reflection is served like health checks.
  const call = (client as unknown as Record<string, () => NodeJS.ReadWriteStream>).serverReflectionInfo!.call(client);
  return new Promise<Uint8Array>((resolve, reject) => {
    call.on('data', (b: Uint8Array) => {
      resolve(b);
      call.end();
      client.close();
    });
    call.on('error', reject);
    call.write(new BinaryWriter().tag(field, 2).string(value).finish() as unknown as string);
  });
}

/** The length-delimited fields of one protobuf message, by number. */
function fields(bytes: Uint8Array): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, type] = r.tag();
    if (type !== 2) {
      r.skip(type);
      continue;
    }
    out.set(no, [...(out.get(no) ?? []), r.bytes()]);
  }
  return out;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const decode = <D extends DescMessage>(schema: D, b: Uint8Array) => fromBinary(schema, b);

describe('WatchMessages and the registry', () => {
  const unaryCall = <T>(method: string, req: unknown): Promise<T> =>
    new Promise((resolve, reject) =>
      (admin as unknown as Record<string, (r: unknown, md: Metadata, cb: (e: ServiceError | null, res: T) => void) => void>)[method]!.call(
        admin,
        req,
        auth(ops.apiKey),
        (e, res) => (e ? reject(e) : resolve(res)),
      ),
    );

  it('ends a watch whose key is revoked', async () => {
    await unaryCall('putClient', create(PutClientRequestSchema, { client: { name: 'watcher', spec: { admin: true } } }));
    const made = await unaryCall<CreateApiKeyResponse>('createApiKey', create(CreateApiKeyRequestSchema, { client: 'watcher' }));
    const w = watch({}, made.apiKey);
    await w.started;
    await unaryCall('revokeApiKey', create(RevokeApiKeyRequestSchema, { client: 'watcher', keyId: made.key!.id }));
    expect(await w.ended).toMatchObject({ code: status.UNAUTHENTICATED, details: 'unknown API key' });
  });
});

describe('server reflection', () => {
  it('lists the relay services without a key', async () => {
    // ServerReflectionResponse.list_services_response (6) → ListServiceResponse.service (1) → ServiceResponse.name (1)
    const res = fields(await reflect(7, '*'));
    const services = (fields(res.get(6)![0]!).get(1) ?? []).map((s) => text(fields(s).get(1)![0]!));
    expect(services.sort()).toEqual(['relay.v1.AdminService', 'relay.v1.MailService']);
  });

  it('describes AdminService, its streaming call included, from the compiled descriptors', async () => {
    // file_descriptor_response (4) → file_descriptor_proto (1), the file first
    const res = fields(await reflect(4, 'relay.v1.AdminService'));
    const files = fields(res.get(4)![0]!)
      .get(1)!
      .map((b) => decode(FileDescriptorProtoSchema, b));
    const mail = files.find((f) => f.name === 'relay/v1/mail.proto')!;
    const methods = mail.service.find((s) => s.name === 'AdminService')!.method;
    expect(methods.find((m) => m.name === 'WatchMessages')).toMatchObject({ serverStreaming: true, outputType: '.relay.v1.MessageEvent' });
    expect(methods.map((m) => m.name)).toContain('GetQueueStats');
    // The files as compiled, with their imports, and the imported files with them: enough to link.
    expect(mail.dependency.sort()).toEqual(['google/protobuf/struct.proto', 'google/protobuf/timestamp.proto']);
    expect(files.map((f) => f.name).sort()).toEqual(['google/protobuf/struct.proto', 'google/protobuf/timestamp.proto', 'relay/v1/mail.proto']);
  });
});

describe('stop', () => {
  it('ends open watches with UNAVAILABLE and does not wait for them', async () => {
    const w = watch({});
    await w.started;
    const t0 = Date.now();
    await ingest.stop();
    expect(Date.now() - t0).toBeLessThan(GRACE_MS / 4);
    expect(await w.ended).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringContaining('stopping') });
  });
});
