import { create } from '@bufbuild/protobuf';
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { MailService, MessageState, SendMailResponseSchema, toGrpcDefinition, type SendMailRequest } from '@relay/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BareCallError, createBareClient } from './bare-client.js';

// The benchmark's bare HTTP/2 client against a real grpc-js server: what the server is sent and
// how its answers, good and bad, come back.
let server: Server;
let port: number;
const seen: Array<{ req: SendMailRequest; auth: string | undefined; deadline: number }> = [];

beforeAll(async () => {
  server = new Server();
  server.addService(toGrpcDefinition(MailService), {
    sendMail(call: ServerUnaryCall<SendMailRequest, unknown>, cb: sendUnaryData<unknown>) {
      seen.push({ req: call.request, auth: call.metadata.get('authorization')[0] as string | undefined, deadline: Number(call.getDeadline()) - Date.now() });
      if (call.request.subject === 'refuse') cb({ code: status.INVALID_ARGUMENT, details: 'subject: refused, with ünïcode' });
      else cb(null, create(SendMailResponseSchema, { messageId: `id-${call.request.subject}`, state: MessageState.QUEUED }));
    },
    getMessage(_call: unknown, cb: sendUnaryData<unknown>) {
      cb({ code: status.UNIMPLEMENTED });
    },
  });
  port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
});

afterAll(() => server.forceShutdown());

describe('bare SendMail client', () => {
  it('sends the request with the API key and deadline and decodes the answer', async () => {
    const client = createBareClient(`127.0.0.1:${port}`, 'k3y');
    try {
      const res = await client.sendMail({ sender: 's1', to: ['a@example.org'], subject: 'hello', text: 'x'.repeat(3000) }, { deadlineMs: 20_000 });
      expect(res).toMatchObject({ messageId: 'id-hello', state: MessageState.QUEUED });
      const last = seen.at(-1)!;
      expect(last.req).toMatchObject({ sender: 's1', to: ['a@example.org'], subject: 'hello' });
      expect(last.req.text).toHaveLength(3000);
      expect(last.auth).toBe('Bearer k3y');
      expect(last.deadline).toBeGreaterThan(10_000);
      expect(last.deadline).toBeLessThanOrEqual(20_000);
    } finally {
      client.close();
    }
  });

  it('rejects with the gRPC status and message of an error answer', async () => {
    const client = createBareClient(`127.0.0.1:${port}`, 'k3y');
    try {
      const err = await client.sendMail({ sender: 's1', to: ['a@example.org'], subject: 'refuse' }, { deadlineMs: 5_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BareCallError);
      expect((err as BareCallError).code).toBe(status.INVALID_ARGUMENT);
      expect((err as Error).message).toContain('subject: refused, with ünïcode');
      // Calls on the same connection go on working after an error.
      await expect(client.sendMail({ sender: 's1', to: ['a@example.org'], subject: 'again' }, { deadlineMs: 5_000 })).resolves.toMatchObject({
        messageId: 'id-again',
      });
    } finally {
      client.close();
    }
  });

  it('fails its calls when nothing listens', async () => {
    const client = createBareClient('127.0.0.1:1', 'k3y');
    try {
      await expect(client.sendMail({ sender: 's1', to: ['a@example.org'], subject: 'x' }, { deadlineMs: 1_000 })).rejects.toThrow();
    } finally {
      client.close();
    }
  });
});
