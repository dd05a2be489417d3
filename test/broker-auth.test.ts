import { randomBytes } from 'node:crypto';
import { credentials, makeGenericClientConstructor, Metadata, status, type ClientReadableStream } from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { errors, nkeyAuthenticator, type NatsConnection } from '@nats-io/nats-core';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createUser } from '@nats-io/nkeys';
import { busNames, createNatsAuth, ENVELOPE_SIG_INVALID, inboxPrefixFor, secretsBucketName, signEnvelope, type NatsAuthSetup, type NatsUser } from '@relay/bus';
import { uuidv7 } from '@relay/core';
import {
  AdminService,
  EnvelopeSchema,
  MessageState,
  SentCopySchema,
  SentCopyState,
  toGrpcDefinition,
  WatchMessagesRequestSchema,
  type MessageEvent,
} from '@relay/proto';
import {
  clientEntry,
  FAST_DELIVERY,
  hasNatsServer,
  mailsWithId,
  newClient,
  type PrivateNats,
  smtpSender,
  type Stack,
  startPrivateNats,
  startSmtpServer,
  startStack,
  type TestClient,
  testRedisUrl,
  type TestSmtpServer,
  uncleanExits,
  uniquePrefix,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const app = newClient('broker-app', ['no-reply', 'flaky', 'bouncer', 'capped']);
const opsKey = newClient('broker-ops', [], true);

let prefix: string;
let auth: NatsAuthSetup;
let nats: PrivateNats;
let smtp: TestSmtpServer;
let flaky: TestSmtpServer;
let bouncer: TestSmtpServer;
let refusing = true;
let stack: Stack;
let client: TestClient;
let ops: TestClient;
const conns: NatsConnection[] = [];

const user = (kind: NatsUser['kind']) => auth.users.find((u) => u.kind === kind)!;

/** A connection as `kind` (its seed, its inbox), as an attacker holding that service's credentials would open. */
async function connectAs(kind: Exclude<NatsUser['kind'], 'admin'>): Promise<NatsConnection> {
  const nc = await connect({
    servers: nats.url,
    authenticator: nkeyAuthenticator(new TextEncoder().encode(user(kind).seed)),
    inboxPrefix: inboxPrefixFor(kind),
  });
  conns.push(nc);
  return nc;
}

async function untilLogged(pattern: RegExp): Promise<void> {
  const until = Date.now() + 10_000;
  while (!pattern.test(nats.output())) {
    if (Date.now() > until) throw new Error(`nats-server never logged ${pattern}:\n${nats.output().slice(-2_000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function untilKnown(as: TestClient, id: string): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      await as.getMessage(id);
      return;
    } catch (err) {
      if ((err as { code?: number }).code !== status.NOT_FOUND || Date.now() > until) throw err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!hasNatsServer)('the broker with per-service users', () => {
  beforeAll(async () => {
    prefix = uniquePrefix('broker');
    auth = createNatsAuth(prefix);
    nats = await startPrivateNats({ auth });
    smtp = await startSmtpServer({ security: 'starttls' });
    // Refuses the first message with a 451: the retry goes back through the scheduler.
    flaky = await startSmtpServer({
      security: 'starttls',
      reply: (ctx) => (ctx.phase === 'data' && ctx.attempt === 1 ? { code: 451, message: '4.7.0 Try again later' } : undefined),
    });
    // Refuses mail for good while `refusing`: FAILED, kept for RetryMessages.
    bouncer = await startSmtpServer({
      security: 'starttls',
      reply: (ctx) => (ctx.phase === 'data' && refusing ? { code: 550, message: '5.7.1 Refused here' } : undefined),
    });
    stack = await startStack({
      prefix,
      nats: { url: nats.url, auth },
      config: {
        clients: [clientEntry(app), clientEntry(opsKey)],
        senders: [
          smtpSender({ id: 'no-reply', server: smtp }),
          smtpSender({ id: 'flaky', server: flaky }),
          smtpSender({ id: 'bouncer', server: bouncer }),
          { ...smtpSender({ id: 'capped', server: smtp }), rate: { daily_recipients: 50 } },
        ],
        delivery: FAST_DELIVERY,
      },
    });
    client = stack.client(app.apiKey);
    ops = stack.client(opsKey.apiKey);
  });

  afterAll(async () => {
    await Promise.allSettled(conns.map((c) => c.close()));
    const results = await stack?.stop();
    await Promise.all([smtp?.close(), flaky?.close(), bouncer?.close(), nats?.close()]);
    expect(uncleanExits(results ?? [])).toEqual([]);
  });

  it('delivers mail end to end with each service on its own user, and no service hits a permission it lacks', async () => {
    const res = await client.sendMail({ sender: 'no-reply', to: ['ada@students.campus.example'], subject: 'hello', text: 'through an authenticated broker' });
    // Scheduled: it waits on the held stream.
    const later = await client.sendMail({
      sender: 'no-reply',
      to: ['cy@students.campus.example'],
      subject: 'later',
      text: 'x',
      sendAt: timestampFromDate(new Date(Date.now() + 1_500)),
    });
    // Larger than one broker message (its body goes through the object store), and retried once:
    // the retry keeps ingest's signature.
    const big = await client.sendMail({
      sender: 'flaky',
      to: ['bob@students.campus.example'],
      subject: 'large',
      text: 'see attachment',
      attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', content: randomBytes(1_500_000) }],
    });
    for (const [id, server] of [
      [res.messageId, smtp],
      [later.messageId, smtp],
      [big.messageId, flaky],
    ] as const) {
      await waitForState(client, id, [MessageState.SENT]);
      await waitForMail(server, id);
    }
    expect((await client.getMessage(big.messageId)).attempts).toBe(2);
    expect(nats.output()).not.toMatch(/Violation/);
  });

  it('lists, retries and cancels messages through ingest, each service on its own user', async () => {
    // Large: the sender keeps the envelope it read from the body store, ingest stores the body again on retry.
    const { messageId } = await client.sendMail({
      sender: 'bouncer',
      to: ['dee@students.campus.example'],
      subject: 'dead letter',
      text: 'see attachment',
      attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', content: randomBytes(1_500_000) }],
    });
    await waitForState(client, messageId, [MessageState.FAILED]);
    const until = Date.now() + 15_000;
    for (;;) {
      const listed = await ops.listMessages({ state: MessageState.FAILED, sender: 'bouncer' });
      if (listed.messages.some((m) => m.messageId === messageId)) break;
      if (Date.now() > until) throw new Error(`ListMessages never listed ${messageId}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    refusing = false;
    expect((await ops.retryMessages({ messageIds: [messageId] })).count).toBe(1);
    expect((await waitForState(client, messageId, [MessageState.SENT])).attempts).toBe(2);
    expect((await waitForMail(bouncer, messageId)).parsed.subject).toBe('dead letter');

    const later = await client.sendMail({
      sender: 'no-reply',
      to: ['eve@students.campus.example'],
      subject: 'never',
      text: 'x',
      sendAt: timestampFromDate(new Date(Date.now() + 60_000)),
    });
    expect((await ops.cancelMessages({ messageIds: [later.messageId] })).count).toBe(1);
    expect((await waitForState(client, later.messageId, [MessageState.FAILED])).lastError).toContain('cancelled by broker-ops');
    expect(nats.output()).not.toMatch(/Violation/);
  });

  it('reads queue figures (Redis, then the pacing log) and watches state changes through ingest on its own user', async () => {
    const Admin = makeGenericClientConstructor(toGrpcDefinition(AdminService), 'AdminService');
    const admin = new Admin(stack.address, credentials.createInsecure());
    const md = new Metadata();
    md.set('authorization', `Bearer ${opsKey.apiKey}`);
    const call = (admin as unknown as Record<string, (req: unknown, md: Metadata) => ClientReadableStream<MessageEvent>>).watchMessages!.call(
      admin,
      create(WatchMessagesRequestSchema, { sender: 'capped' }),
      md,
    );
    const seen: string[] = [];
    call.on('data', (e: MessageEvent) => seen.push(MessageState[e.state]));
    call.on('error', () => {});
    await new Promise((resolve) => call.once('metadata', resolve));
    try {
      const { messageId } = await client.sendMail({ sender: 'capped', to: ['fay@students.campus.example'], subject: 'capped', text: 'x' });
      await waitForState(client, messageId, [MessageState.SENT]);
      const until = Date.now() + 10_000;
      while (!seen.includes('SENT') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(seen).toEqual(['QUEUED', 'SENDING', 'SENT']);
    } finally {
      call.cancel();
      admin.close();
    }
    const [fromRedis] = (await ops.getQueueStats({ sender: 'capped' })).senders;
    expect(fromRedis).toMatchObject({ recipientsToday: 1n, dailyRecipientCap: 50n });
    // Nothing waits for the sender, so nothing rebuilds its state: the figures come from the log.
    const redis = new Redis(testRedisUrl());
    try {
      const keys = await redis.keys(`${prefix}:pace:{capped}:*`);
      expect(keys.length).toBeGreaterThan(0);
      await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
    const [fromLog] = (await ops.getQueueStats({ sender: 'capped' })).senders;
    expect(fromLog).toMatchObject({ recipientsToday: 1n, dailyRecipientCap: 50n });
    expect(nats.output()).not.toMatch(/Violation/);
  });

  it('refuses a client without credentials, or with a key it does not know', async () => {
    await expect(connect({ servers: nats.url, reconnect: false })).rejects.toBeInstanceOf(errors.AuthorizationError);
    const stranger = new TextDecoder().decode(createUser().getSeed());
    await expect(connect({ servers: nats.url, reconnect: false, authenticator: nkeyAuthenticator(new TextEncoder().encode(stranger)) })).rejects.toBeInstanceOf(
      errors.AuthorizationError,
    );
  });

  it("keeps each service's user to its own subjects: no dispatching from ingest, no stream deletion, no reading others' mail", async () => {
    const n = busNames(prefix);
    const ingest = await connectAs('ingest');
    await expect(jetstream(ingest, { timeout: 2_000 }).publish(n.dispatchSubject('smtp', 'no-reply'), new Uint8Array([1]))).rejects.toThrow();
    await untilLogged(
      new RegExp(`Publish Violation - Nkey "${user('ingest').publicKey}", Subject "${n.dispatchSubject('smtp', 'no-reply').replace(/\./g, '\\.')}"`),
    );

    const scheduler = await connectAs('scheduler');
    const jsm = await jetstreamManager(scheduler, { timeout: 2_000 });
    await expect(jsm.streams.delete(n.dispatchStream)).rejects.toThrow();
    await expect(jsm.streams.info(n.dispatchStream)).resolves.toMatchObject({ config: { name: n.dispatchStream } });
    // The senders' secrets and pulled mail are not the scheduler's to read.
    const secrets = `KV_${secretsBucketName(prefix)}`;
    await expect(jsm.streams.getMessage(secrets, { seq: 1 })).rejects.toThrow();
    await untilLogged(
      new RegExp(`Publish Violation - Nkey "${user('scheduler').publicKey}", Subject "\\$JS\\.API\\.STREAM\\.MSG\\.GET\\.${secrets.replace(/\./g, '\\.')}"`),
    );
    scheduler.subscribe(`${inboxPrefixFor('smtp-sender')}.>`);
    await untilLogged(new RegExp(`Subscription Violation - Nkey "${user('scheduler').publicKey}", Subject "_INBOX\\.smtp-sender\\.>"`));

    const sender = await connectAs('smtp-sender');
    const sjsm = await jetstreamManager(sender, { timeout: 2_000 });
    await expect(sjsm.streams.getMessage(n.submittedStream, { seq: 1 })).rejects.toThrow();
    await expect(sjsm.consumers.add(n.dispatchStream, { durable_name: 'thief', filter_subject: n.dispatchWildcard('graph') })).rejects.toThrow();
  });

  it('lets the senders put hard bounces in the suppression bucket and ingest read it; not the scheduler', async () => {
    const n = busNames(prefix);
    const subject = (key: string) => `$KV.${n.suppressedBucket}.${key}`;
    for (const kind of ['smtp-sender', 'graph-sender'] as const) {
      await expect(jetstream(await connectAs(kind), { timeout: 2_000 }).publish(subject(`k-${kind}`), '{}')).resolves.toMatchObject({
        stream: `KV_${n.suppressedBucket}`,
      });
    }
    const ingest = await connectAs('ingest');
    const got = await (await jetstreamManager(ingest, { timeout: 2_000 })).streams.getMessage(`KV_${n.suppressedBucket}`, {
      last_by_subj: subject('k-smtp-sender'),
    });
    expect(got?.string()).toBe('{}');
    // The scheduler has no business with it.
    await expect(jetstream(await connectAs('scheduler'), { timeout: 2_000 }).publish(subject('k-scheduler'), '{}')).rejects.toThrow();
  });

  it('lets the smtp-sender record where a copy to Sent stands and ingest read it for GetMessage; not the others', async () => {
    const { messageId } = await client.sendMail({ sender: 'no-reply', to: ['ada@students.campus.example'], subject: 'copy', text: 'x' });
    await waitForState(client, messageId, [MessageState.SENT]);
    const n = busNames(prefix);
    const subject = `$KV.${n.sentCopiesBucket}.${messageId}`;
    const record = toBinary(
      SentCopySchema,
      create(SentCopySchema, { state: SentCopyState.COPIED, folder: 'Sent Items', attempts: 1, at: timestampFromDate(new Date()) }),
    );
    // The bucket is the one the smtp-sender made at start, on its own user.
    await expect(jetstream(await connectAs('smtp-sender'), { timeout: 2_000 }).publish(subject, record)).resolves.toMatchObject({
      stream: `KV_${n.sentCopiesBucket}`,
    });
    expect((await client.getMessage(messageId)).sentCopy).toMatchObject({ state: SentCopyState.COPIED, folder: 'Sent Items', attempts: 1 });
    for (const kind of ['ingest', 'scheduler', 'graph-sender'] as const) {
      await expect(jetstream(await connectAs(kind), { timeout: 2_000 }).publish(subject, record), kind).rejects.toThrow();
    }
  });

  it("refuses a dispatch the scheduler's user injects without ingest's signature: FAILED, nothing reaches the SMTP server", async () => {
    const n = busNames(prefix);
    const js = jetstream(await connectAs('scheduler'));
    const forge = (sig?: Buffer) => {
      const env = create(EnvelopeSchema, {
        messageId: uuidv7(),
        sender: 'no-reply',
        client: app.name,
        to: ['victim@elsewhere.example'],
        subject: 'Your password expires today',
        text: 'https://phish.example/',
        submittedAt: timestampFromDate(new Date()),
        attempt: 1,
        recipientCount: 1,
      });
      return sig ? signEnvelope(sig, env) : env;
    };
    // One without a signature, one signed with a key of the attacker's own.
    const forged = [forge(), forge(randomBytes(32))];
    for (const env of forged) await js.publish(n.dispatchSubject('smtp', 'no-reply'), toBinary(EnvelopeSchema, env));
    for (const env of forged) {
      // No QUEUED event precedes a forged message: it is unknown until the sender reports it,
      // and its report names no client (the envelope's claim is not trusted): an admin sees it.
      await untilKnown(ops, env.messageId);
      const res = await waitForState(ops, env.messageId, [MessageState.FAILED]);
      expect(res.lastError).toBe(ENVELOPE_SIG_INVALID);
      expect(mailsWithId(smtp, env.messageId)).toEqual([]);
    }
    expect(smtp.messages.filter((m) => m.envelope.to.includes('victim@elsewhere.example'))).toEqual([]);
    // Nothing of a forged message is kept: RetryMessages cannot send it.
    expect((await ops.retryMessages({ messageIds: forged.map((e) => e.messageId) })).count).toBe(0);
    expect(stack.smtpSenders[0]!.logs.join('\n')).toContain(ENVELOPE_SIG_INVALID);
  });
});
