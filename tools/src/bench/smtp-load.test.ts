import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smtpMessage, smtpOpenLoop } from './smtp-load.js';

let server: SMTPServer;
let port: number;
const received: string[] = [];

beforeAll(async () => {
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address, _session, cb) {
      cb(address.address.startsWith('refused@') ? Object.assign(new Error('no'), { responseCode: 550 }) : undefined);
    },
    onData(stream, _session, cb) {
      let text = '';
      stream.setEncoding('latin1').on('data', (c: string) => (text += c));
      stream.on('end', () => {
        received.push(text);
        cb(null, 'queued');
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.server.address() as { port: number }).port;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('smtpOpenLoop', () => {
  it('offers every message over kept-open sessions and times the replies to DATA', async () => {
    const r = await smtpOpenLoop({ port, rate: 100, seconds: 0.2, sessions: 3, size: 500, from: 'a@bench.test', to: 'b@example.test' });
    expect(r).toMatchObject({ count: 20, errors: 0 });
    expect(received).toHaveLength(20);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
    expect(received[0]).toBe(smtpMessage('a@bench.test', 'b@example.test', 500));
  });

  it('counts refused messages as errors', async () => {
    const r = await smtpOpenLoop({ port, rate: 100, seconds: 0.05, sessions: 1, size: 100, from: 'a@bench.test', to: 'refused@example.test' });
    expect(r.errors).toBe(r.count);
  });
});
