import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import type { Bus } from '@relay/bus';
import { parseConfig } from '@relay/config';
import { createLogger } from '@relay/telemetry';
import { testCa, testRedisUrl, uniquePrefix } from '@relay/testkit';
import { createAuthenticator } from '../auth.js';
import { createClientBudget, type ClientBudget } from '../client-budget.js';
import type { IngestContext } from '../mail-service.js';
import { createSmtpDoor, type SmtpDoorOptions } from './smtp-door.js';

/** The largest sender limit, which EHLO advertises as SIZE. */
const MAX_SIZE = 50_000;
const config = parseConfig(
  `
clients:
  - { name: printer, api_key: k-0123456789abcdef0123456789abcdef0, senders: [scans, archive], smtp: { allow_ips: [127.0.0.1] } }
  - { name: metered, api_key: k-metered-0123456789abcdef01234567, senders: [metered], smtp: { allow_ips: [127.0.0.4] }, limits: { daily_recipients: 1 } }
senders:
  - { id: scans, from: scans@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls }, rate: { max_message_bytes: 1000, max_recipients_per_message: 2 } }
  - { id: archive, from: archive@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls }, rate: { max_message_bytes: ${MAX_SIZE} } }
  - { id: metered, from: metered@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }
limits: { max_message_bytes: 10000 }
`,
  {},
);

const redis = new Redis(testRedisUrl());
const logger = createLogger({ service: 'test', level: 'silent' });
afterAll(() => redis.disconnect());

/** What ingest gives the door, with no broker: a message that gets past every check is answered "not stored" (451). */
function contextFor(cfg: typeof config, budget?: ClientBudget): IngestContext {
  return {
    config: cfg,
    senders: new Map(cfg.senders.map((s) => [s.id, s])),
    bus: {} as Bus,
    auth: createAuthenticator(cfg.clients),
    budget,
    logger,
    envelopeKey: Buffer.alloc(32),
  };
}

function doorFor(ctx: IngestContext, options: Partial<SmtpDoorOptions> = {}) {
  return createSmtpDoor(ctx, {
    host: '127.0.0.1',
    port: 0,
    smtpsPort: undefined,
    tls: { cert: testCa().certPem, key: testCa().keyPem },
    graceMs: 1_000,
    ...options,
  });
}

function door(budget?: ClientBudget) {
  return doorFor(contextFor(config, budget), { graceMs: 60_000 });
}

/** A change of configuration as ingest makes it (relay.yaml edited, or the registry). */
function reconfigure(ctx: IngestContext, cfg: typeof config) {
  ctx.config = cfg;
  ctx.senders = new Map(cfg.senders.map((s) => [s.id, s]));
}

const authPlain = (user: string, password: string) => `AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`;

/** A raw client: sends lines, collects every reply line; `starttls()` after a 220 to STARTTLS. */
async function client(port: number, localAddress = '127.0.0.1') {
  let socket: Socket = connect({ host: '127.0.0.1', port, localAddress });
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

/** A client past EHLO, STARTTLS and EHLO again: ready to AUTH. */
async function overTls(port: number, localAddress?: string) {
  const c = await client(port, localAddress);
  c.send('EHLO client.test');
  await c.until(/^250 /);
  c.send('STARTTLS');
  await c.until(/^220 /, 2);
  await c.starttls();
  c.send('EHLO client.test');
  await c.until(/^250 /, 2);
  return c;
}

describe('SMTP door logins', () => {
  it('closes a session after three failed AUTH attempts', async () => {
    const d = door();
    const { smtp } = await d.start();
    try {
      const c = await overTls(smtp!);
      const guess = (password: string) => c.send(authPlain('j1', password));
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

describe('SMTP door: a login made before a change', () => {
  const withPassword = (password: string) =>
    parseConfig(
      `
clients:
  - { name: j1, api_key: k-j1-0123456789abcdef0123456789abcdef, senders: [registrar], smtp: { username: j1, password: ${password} } }
senders:
  - { id: registrar, from: registrar@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }
`,
      {},
    );

  it('no longer sends once its password changed: 421 4.7.0 at the next MAIL FROM', async () => {
    const before = withPassword('old-password');
    const ctx = contextFor(before);
    const d = doorFor(ctx);
    const { smtp } = await d.start();
    try {
      const c = await overTls(smtp!);
      c.send(authPlain('j1', 'old-password'));
      await c.until(/^235 /);
      c.send('MAIL FROM:<registrar@campus.example>');
      await c.until(/^250 2\.1\.0 /);
      c.send('RSET');
      await c.until(/^250 2\.0\.0 /);
      // The password is changed (relay.yaml edited, or CreateSmtpPassword): this session signed in with the old one.
      reconfigure(ctx, withPassword('new-password'));
      c.send('MAIL FROM:<registrar@campus.example>');
      await c.until(/^421 /);
      expect(c.lines.at(-1)).toBe('421 4.7.0 The credentials this session signed in with are no longer valid; reconnect and sign in again');
      await c.closed;
    } finally {
      await d.stop();
    }
  });
});

describe('SMTP door: SIZE follows the configuration', () => {
  const withLimit = (bytes: number) =>
    parseConfig(
      `
clients:
  - { name: printer, api_key: k-0123456789abcdef0123456789abcdef0, senders: [scans], smtp: { allow_ips: [127.0.0.1] } }
senders:
  - { id: scans, from: scans@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls }, rate: { max_message_bytes: ${bytes} } }
limits: { max_message_bytes: 2000 }
`,
      {},
    );

  it('advertises and takes a larger limit set after the door started', async () => {
    const before = withLimit(2000);
    const ctx = contextFor(before);
    const d = doorFor(ctx);
    const { smtp } = await d.start();
    try {
      const c = await client(smtp!);
      c.send('EHLO scanner.test');
      await c.until(/^250 /);
      expect(c.lines).toContain('250-SIZE 2000');
      c.send('MAIL FROM:<scans@campus.example> SIZE=30000');
      await c.until(/^552 /);
      // The sender's limit is raised (relay.yaml, or PutSender): the next EHLO and MAIL go by it.
      reconfigure(ctx, withLimit(50_000));
      c.send('EHLO scanner.test');
      await c.until(/^250 /, 2);
      expect(c.lines).toContain('250-SIZE 50000');
      c.send('MAIL FROM:<scans@campus.example> SIZE=30000');
      await c.until(/^250 2\.1\.0 /);
    } finally {
      await d.stop();
    }
  });
});

describe('SMTP door: logins guessed over many connections', () => {
  it('refuses AUTH from an address with too many recent failures, on a new connection too', async () => {
    const d = doorFor(contextFor(config), { loginFailuresPerAddress: 4 });
    const { smtp } = await d.start();
    const signedIn = () => overTls(smtp!, '127.0.0.9');
    const guess = (c: Awaited<ReturnType<typeof signedIn>>, password: string) => c.send(authPlain('j1', password));
    try {
      const first = await signedIn();
      for (const p of ['one', 'two', 'three']) guess(first, p);
      await first.until(/^421 4\.7\.0 Too many failed authentication attempts/);
      await first.closed;
      const second = await signedIn();
      guess(second, 'four');
      await second.until(/^535 5\.7\.8 /);
      // The fifth guess from the address is not checked at all.
      guess(second, 'five');
      await second.until(/^421 /);
      expect(second.lines.at(-1)).toBe('421 4.7.0 Too many failed logins from your address; try again in 15 minutes');
      await second.closed;
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
    // that it comes, and before the 421 that closes the session.
    await busy.closed;
    await stopped;
    const replied = busy.lines.findIndex((l) => /^451 4\.3\.0 /.test(l));
    expect(replied).toBeGreaterThan(0);
    expect(busy.lines.slice(replied + 1)).toEqual([expect.stringMatching(/^421 4\.3\.2 /)]);
  });
});

/** The EHLO keywords of the last EHLO reply (lines after the first, up to the final `250 `). */
function keywords(lines: string[]): string[] {
  const end = lines.findLastIndex((l) => l.startsWith('250 '));
  let first = end;
  while (first > 0 && lines[first - 1]!.startsWith('250-')) first--;
  return lines.slice(first + 1, end + 1).map((l) => l.slice(4));
}

describe('SMTP door: what EHLO offers', () => {
  it('PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, SIZE and STARTTLS before TLS, AUTH only after it', async () => {
    const d = door();
    const { smtp } = await d.start();
    try {
      const c = await client(smtp!);
      c.send('EHLO client.test');
      await c.until(/^250 /);
      const plain = keywords(c.lines);
      expect(plain).toEqual(expect.arrayContaining(['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', `SIZE ${MAX_SIZE}`, 'STARTTLS']));
      expect(plain.filter((k) => k.startsWith('AUTH'))).toEqual([]);
      c.send(`AUTH PLAIN ${Buffer.from('\0j1\0secret').toString('base64')}`);
      await c.until(/^500 /);
      c.send('STARTTLS');
      await c.until(/^220 /, 2);
      await c.starttls();
      c.send('EHLO client.test');
      await c.until(/^250 /, 2);
      const secure = keywords(c.lines);
      expect(secure).toEqual(
        expect.arrayContaining(['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', `SIZE ${MAX_SIZE}`, 'AUTH PLAIN LOGIN']),
      );
      expect(secure).not.toContain('STARTTLS');
      c.send('QUIT');
      await c.closed;
    } finally {
      await d.stop();
    }
  });
});

describe('SMTP door: every refusal carries its enhanced status code', () => {
  /** Runs `commands` (a message body ending in "." counts as one) in one session from `from`; returns the replies after EHLO. */
  async function replies(commands: string[], opts: { from?: string; budget?: ClientBudget } = {}): Promise<string[]> {
    const d = door(opts.budget);
    const { smtp } = await d.start();
    try {
      const c = await client(smtp!, opts.from);
      c.send('EHLO client.test');
      await c.until(/^250 /);
      const before = c.lines.length;
      const final = /^\d{3} /;
      for (const cmd of commands) {
        const seen = c.lines.filter((l) => final.test(l)).length;
        c.send(cmd);
        await c.until(final, seen + 1);
      }
      c.send('QUIT');
      await c.closed;
      return c.lines.slice(before).filter((l) => !l.startsWith('221'));
    } finally {
      await d.stop();
    }
  }

  it('530 5.7.0 without AUTH from an address no client allows', async () => {
    expect(await replies(['MAIL FROM:<scans@campus.example>'], { from: '127.0.0.3' })).toEqual([expect.stringMatching(/^530 5\.7\.0 Authentication required/)]);
  });

  it("550 5.7.1 for a MAIL FROM that is not the client's: the door's code, once", async () => {
    expect(await replies(['MAIL FROM:<president@campus.example>'])).toEqual([
      `550 5.7.1 Sender address <president@campus.example> is not one of client "printer"'s senders (a sender's from or smtp_aliases)`,
    ]);
  });

  it("552 5.3.4 for a declared SIZE over the sender's limit", async () => {
    expect(await replies(['MAIL FROM:<scans@campus.example> SIZE=1001'])).toEqual([
      expect.stringMatching(/^552 5\.3\.4 Message size 1001 exceeds the limit of sender "scans"/),
    ]);
  });

  it('552 5.3.4 for a declared SIZE over the advertised one (the protocol layer answers it)', async () => {
    expect(await replies([`MAIL FROM:<archive@campus.example> SIZE=${MAX_SIZE + 1}`])).toEqual([
      `552 5.3.4 Message size ${MAX_SIZE + 1} exceeds the maximum message size of ${MAX_SIZE} bytes`,
    ]);
  });

  it("452 4.5.3 for a recipient over the sender's max_recipients_per_message", async () => {
    const got = await replies(['MAIL FROM:<scans@campus.example>', 'RCPT TO:<a@example.test>', 'RCPT TO:<b@example.test>', 'RCPT TO:<c@example.test>']);
    expect(got.at(-1)).toMatch(/^452 4\.5\.3 Too many recipients: sender "scans" takes at most 2/);
  });

  it('552 5.3.4 for a message that grows past the limit while DATA is read', async () => {
    const body = `From: scans@campus.example\r\nSubject: big\r\n\r\n${'x'.repeat(998)}\r\n${'y'.repeat(100)}\r\n.`;
    const got = await replies(['MAIL FROM:<scans@campus.example>', 'RCPT TO:<a@example.test>', 'DATA', body]);
    expect(got.at(-1)).toMatch(/^552 5\.3\.4 Message exceeds the limit of sender "scans" \(1000 bytes\)/);
  });

  it('550 5.7.1 for a message without a From header', async () => {
    const got = await replies(['MAIL FROM:<scans@campus.example>', 'RCPT TO:<a@example.test>', 'DATA', 'Subject: no author\r\n\r\nhello\r\n.']);
    expect(got.at(-1)).toMatch(/^550 5\.7\.1 The message has no From header/);
  });

  it("452 4.3.1 when the client's quota refuses the message, naming the limit", async () => {
    const budget = createClientBudget(redis, uniquePrefix('smtp-quota'), logger, 60_000);
    const got = await replies(
      [
        'MAIL FROM:<metered@campus.example>',
        'RCPT TO:<a@example.test>',
        'RCPT TO:<b@example.test>',
        'DATA',
        'From: metered@campus.example\r\nSubject: two\r\n\r\nhello\r\n.',
      ],
      { from: '127.0.0.4', budget },
    );
    expect(got.at(-1)).toMatch(/^452 4\.3\.1 The message was not stored: .*limits\.daily_recipients/);
  });

  it('451 4.3.0 when the broker does not take the message', async () => {
    const got = await replies([
      'MAIL FROM:<scans@campus.example>',
      'RCPT TO:<a@example.test>',
      'DATA',
      'From: scans@campus.example\r\nSubject: hi\r\n\r\nhello\r\n.',
    ]);
    expect(got.at(-1)).toMatch(/^451 4\.3\.0 The message was not stored/);
  });
});
