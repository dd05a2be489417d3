import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import type { Bus } from '@relay/bus';
import { parseConfig } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import { testCa } from '@relay/testkit';
import { createAuthenticator } from '../auth.js';
import type { IngestContext } from '../mail-service.js';
import { createSmtpDoor } from './smtp-door.js';

const config = parseConfig(
  `
clients: [{ name: printer, api_key: k-0123456789abcdef0123456789abcdef0, senders: [scans], smtp: { allow_ips: [127.0.0.1] } }]
senders: [{ id: scans, from: scans@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }]
`,
  {},
);

function door() {
  // Nothing here reaches the broker: these sessions never get to DATA.
  const ctx: IngestContext = { config, senders: new Map(config.senders.map((s) => [s.id, s])), bus: {} as Bus, auth: createAuthenticator(config.clients), logger: createLogger({ service: 'test', level: 'silent' }), envelopeKey: Buffer.alloc(32) };
  return createSmtpDoor(ctx, { host: '127.0.0.1', port: 0, smtpsPort: undefined, tls: { cert: testCa().certPem, key: testCa().keyPem }, graceMs: 60_000 });
}

/** A raw client: sends lines, collects every reply line; `starttls()` after a 220 to STARTTLS. */
async function client(port: number) {
  let socket: Socket = connect({ host: '127.0.0.1', port });
  const lines: string[] = [];
  let waiter: (() => void) | undefined;
  const listen = (s: Socket) =>
    s.setEncoding('latin1').on('data', (chunk: string) => {
      lines.push(...chunk.split('\r\n').filter(Boolean));
      waiter?.();
    });
  listen(socket);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  /** Resolves once `n` reply lines match. */
  const until = async (re: RegExp, n = 1) => {
    while (lines.filter((l) => re.test(l)).length < n) await new Promise<void>((r) => (waiter = r));
  };
  await until(/^220 /);
  return {
    lines,
    until,
    closed,
    send: (line: string) => socket.write(`${line}\r\n`),
    async starttls() {
      socket.removeAllListeners('data');
      const secure = tlsConnect({ socket, ca: testCa().caPem, servername: 'localhost' });
      await new Promise<void>((r) => secure.once('secureConnect', () => r()));
      socket = secure;
      listen(socket);
    },
  };
}

describe('SMTP door logins', () => {
  it('closes a session after three failed AUTH attempts', async () => {
    const d = door();
    const { smtp } = await d.start();
    try {
      const c = await client(smtp!);
      c.send('EHLO guesser.test');
      await c.until(/^250 /);
      c.send('STARTTLS');
      await c.until(/^220 /, 2);
      await c.starttls();
      c.send('EHLO guesser.test');
      await c.until(/^250 /, 2);
      const guess = (password: string) => c.send(`AUTH PLAIN ${Buffer.from(`\0j1\0${password}`).toString('base64')}`);
      guess('one');
      guess('two');
      await c.until(/^535 5\.7\.8 /, 2);
      guess('three');
      await c.until(/^421 4\.7\.0 Too many failed authentication attempts/);
      await c.closed;
    } finally {
      await d.stop();
    }
  });
});

describe('SMTP door shutdown', () => {
  it('closes idle sessions with 421 at once instead of waiting out the grace period', async () => {
    const d = door();
    const { smtp } = await d.start();
    const idle = await client(smtp!);
    idle.send('EHLO printer.test');
    await idle.until(/^250 /);
    const stopped = d.stop();
    await idle.until(/^421 4\.3\.2 /);
    await idle.closed;
    await stopped;
  });

  it('lets a message being received get its reply to DATA before the session closes', async () => {
    const d = door();
    const { smtp } = await d.start();
    const busy = await client(smtp!);
    busy.send('EHLO printer.test');
    await busy.until(/^250 /);
    busy.send('MAIL FROM:<scans@campus.example>');
    busy.send('RCPT TO:<ada@students.campus.example>');
    busy.send('DATA');
    await busy.until(/^354 /);
    busy.send('From: scans@campus.example\r\nSubject: scan\r\n');
    const stopped = d.stop();
    busy.send('\r\nbody\r\n.');
    // The test's context has no broker, so the reply is the "not stored" one; what matters is
    // that it comes, and before any 421.
    await busy.until(/^451 4\.3\.0 /);
    expect(busy.lines.filter((l) => l.startsWith('421'))).toEqual([]);
    busy.send('QUIT');
    await busy.closed;
    await stopped;
  });
});
