import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { MessageState, StatusEventSchema } from '@relay/proto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endpointKey, urlForLog, webhookJob } from './events.js';
import { localSign, postEvent } from './post.js';

const secret = `whsec_${randomBytes(32).toString('base64')}`;
const signer = new Webhook(secret);
let server: Server;
let base: string;
const seen: Array<{ headers: IncomingMessage['headers']; body: string }> = [];
const routes: Record<string, (res: ServerResponse) => void> = {
  '/ok': (res) => res.writeHead(204).end(),
  '/moved': (res) => res.writeHead(302, { location: 'https://elsewhere.example/hook' }).end(),
  '/big': (res) => res.writeHead(200).end('x'.repeat(100_000)),
  '/slow': () => {},
  '/down': (res) => res.writeHead(503).end('maintenance'),
};

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
    routes[req.url ?? '']?.(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const opts = { timeoutMs: 500, maxResponseBytes: 64 };

describe('postEvent', () => {
  it('signs the body with the Standard Webhooks headers, which the library verifies', async () => {
    const body = JSON.stringify({ type: 'message.sent', timestamp: new Date().toISOString(), data: { message_id: 'm1' } });
    const out = await postEvent(`${base}/ok`, 'evt_1', body, localSign([signer]), opts);
    expect(out).toMatchObject({ ok: true, status: 204, error: '' });
    const got = seen.at(-1)!;
    expect(got.headers['webhook-id']).toBe('evt_1');
    expect(got.headers['content-type']).toBe('application/json');
    expect(new Webhook(secret).verify(got.body, got.headers as Record<string, string>)).toEqual(JSON.parse(body));
    // Another secret does not verify it.
    expect(() => new Webhook(`whsec_${randomBytes(32).toString('base64')}`).verify(got.body, got.headers as Record<string, string>)).toThrow();
  });

  it('signs with every secret given, so a receiver holding either verifies', async () => {
    const previous = `whsec_${randomBytes(32).toString('base64')}`;
    await postEvent(`${base}/ok`, 'evt_r', '{"type":"message.sent"}', localSign([signer, new Webhook(previous)]), opts);
    const got = seen.at(-1)!;
    expect(String(got.headers['webhook-signature']).split(' ')).toHaveLength(2);
    for (const s of [secret, previous]) expect(new Webhook(s).verify(got.body, got.headers as Record<string, string>)).toEqual({ type: 'message.sent' });
  });

  it('does not follow a redirect', async () => {
    const before = seen.length;
    const out = await postEvent(`${base}/moved`, 'evt_2', '{}', localSign([signer]), opts);
    expect(out).toMatchObject({ ok: false, status: 302 });
    expect(out.error).toContain('redirects are not followed (to https://elsewhere.example/hook)');
    expect(seen.length).toBe(before + 1);
  });

  it('reads a bounded part of the answer, and names a non-2xx status', async () => {
    expect((await postEvent(`${base}/big`, 'evt_3', '{}', localSign([signer]), opts)).response).toHaveLength(64);
    expect(await postEvent(`${base}/down`, 'evt_4', '{}', localSign([signer]), opts)).toMatchObject({
      ok: false,
      status: 503,
      error: 'HTTP 503',
      response: 'maintenance',
    });
  });

  it('gives up on a receiver that does not answer in time, and names a refused connection', async () => {
    expect(await postEvent(`${base}/slow`, 'evt_5', '{}', localSign([signer]), opts)).toMatchObject({ ok: false, status: 0, error: 'no answer within 500 ms' });
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const refused = await postEvent(`http://127.0.0.1:${port}/`, 'evt_6', '{}', localSign([signer]), opts);
    expect(refused).toMatchObject({ ok: false, status: 0 });
    expect(refused.error).toMatch(/^ECONNREFUSED/);
  });

  it('posts nothing unsigned: a signature that cannot be made is a failed attempt', async () => {
    const before = seen.length;
    const out = await postEvent(`${base}/ok`, 'evt_7', '{}', () => Promise.reject(new Error('webhook of client "p" has no signing secret')), opts);
    expect(out).toMatchObject({ ok: false, status: 0, error: 'not signed: webhook of client "p" has no signing secret' });
    expect(seen.length).toBe(before);
  });
});

describe('webhook events', () => {
  const ev = (state: MessageState, detail = '') =>
    create(StatusEventSchema, {
      messageId: '01a2-b3',
      sender: 'registrar',
      state,
      attempt: 2,
      detail,
      at: timestampFromDate(new Date('2026-12-05T09:00:00Z')),
    });

  it('makes one event per state change, with an id stable for the same status event', () => {
    const job = webhookJob(ev(MessageState.FAILED, '550 5.1.1 User unknown'), 'sis', 42)!;
    expect(job).toEqual(webhookJob(ev(MessageState.FAILED, '550 5.1.1 User unknown'), 'sis', 42));
    expect(job.id).toBe('evt_01a2b3_42');
    expect(JSON.parse(job.body)).toEqual({
      type: 'message.failed',
      timestamp: '2026-12-05T09:00:00.000Z',
      data: {
        message_id: '01a2-b3',
        client: 'sis',
        sender: 'registrar',
        state: 'FAILED',
        attempts: 2,
        last_error: '550 5.1.1 User unknown',
        detail: '550 5.1.1 User unknown',
      },
    });
    expect(JSON.parse(webhookJob(ev(MessageState.SENT, '250 OK'), 'sis', 43)!.body).data.last_error).toBe('');
    expect(webhookJob(ev(MessageState.UNSPECIFIED), 'sis', 44)).toBeUndefined();
  });

  it('keys an endpoint by client and URL, and logs a URL without its query', () => {
    expect(endpointKey('a', 'https://x.example/h')).not.toBe(endpointKey('b', 'https://x.example/h'));
    expect(endpointKey('a', 'https://x.example/h')).toMatch(/^[0-9a-f]{20}$/);
    expect(urlForLog('https://x.example/h?token=s3cret')).toBe('https://x.example/h');
  });
});
