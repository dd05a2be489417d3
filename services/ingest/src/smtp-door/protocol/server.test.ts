import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { testCa } from '@relay/testkit';
import { SmtpReply } from './reply.js';
import { createSmtpProtocolServer, type SmtpProtocolServer } from './server.js';
import type { SmtpHooks, SmtpMessage, SmtpProtocolOptions, SmtpSession } from './types.js';

interface Received {
  bytes: Buffer;
  message: SmtpMessage;
  from: string | false;
  to: string[];
  transmissionType: string;
}

const running: SmtpProtocolServer[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

/** A server whose hooks record what they see; `hooks` replaces any of them. */
async function serve(hooks: Partial<SmtpHooks> = {}, options: Partial<SmtpProtocolOptions> = {}) {
  const messages: Received[] = [];
  const calls: string[] = [];
  const server = createSmtpProtocolServer(
    { name: 'mx.test', banner: 'Test', secure: false, tls: { cert: testCa().certPem, key: testCa().keyPem }, size: 1000, auth: true, ...options },
    {
      onAuth: ({ method, username, password }) => {
        calls.push(`auth ${method} ${username}`);
        if (password !== 'right') throw new SmtpReply(535, '5.7.8 Authentication credentials invalid');
        return { user: username };
      },
      onMailFrom: (a) => {
        calls.push(`mail ${a.address}`);
      },
      onRcptTo: (a) => {
        calls.push(`rcpt ${a.address}`);
      },
      onMessage: (message: SmtpMessage, session: SmtpSession) => {
        messages.push({
          bytes: Buffer.concat(message.chunks),
          message,
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : false,
          to: session.envelope.rcptTo.map((r) => r.address),
          transmissionType: session.transmissionType,
        });
        if (message.exceeded) throw new SmtpReply(552, '5.3.4 Too big for this test');
        return `2.0.0 OK id-${messages.length} queued`;
      },
      ...hooks,
    },
  );
  running.push(server);
  const port = await server.listen(0, '127.0.0.1');
  return { port, server, messages, calls };
}

/** A raw client: writes bytes, collects reply lines. */
async function client(port: number, opts: { implicitTls?: boolean } = {}) {
  let socket: Socket = opts.implicitTls
    ? tlsConnect({ host: '127.0.0.1', port, ca: testCa().caPem, servername: 'localhost' })
    : connect({ host: '127.0.0.1', port });
  const lines: string[] = [];
  let buffered = '';
  let waiter: (() => void) | undefined;
  const listen = (s: Socket) =>
    s.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      const parts = buffered.split('\r\n');
      buffered = parts.pop()!;
      lines.push(...parts);
      waiter?.();
    });
  listen(socket);
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const until = async (re: RegExp, n = 1) => {
    const started = Date.now();
    const tick = setInterval(() => waiter?.(), 100);
    try {
      while (lines.filter((l) => re.test(l)).length < n) {
        if (socket.destroyed || Date.now() - started > 5_000) throw new Error(`no ${re} (closed: ${socket.destroyed}); got ${JSON.stringify(lines)}`);
        await new Promise<void>((r) => (waiter = r));
      }
    } finally {
      clearInterval(tick);
    }
  };
  await until(/^220 /);
  return {
    lines,
    until,
    closed,
    /** Replies from the `from`th line on. */
    since: (from: number) => lines.slice(from),
    write: (data: string | Buffer) => socket.write(data),
    send: (line: string) => socket.write(`${line}\r\n`),
    /** Sends `lines` and waits for that many final replies (a multi-line EHLO reply counts once). */
    async exchange(...commands: string[]): Promise<string[]> {
      const before = lines.length;
      const finals = () => lines.slice(before).filter((l) => /^\d{3} /.test(l)).length;
      socket.write(commands.map((c) => `${c}\r\n`).join(''));
      while (finals() < commands.length) await until(/^\d{3} /, lines.filter((l) => /^\d{3} /.test(l)).length + 1);
      return lines.slice(before);
    },
    async starttls() {
      socket.removeAllListeners('data');
      const secure = tlsConnect({ socket, ca: testCa().caPem, servername: 'localhost' });
      await new Promise<void>((r) => secure.once('secureConnect', () => r()));
      socket = secure;
      listen(socket);
    },
  };
}

const keywords = (reply: string[]) =>
  reply
    .filter((l) => /^250[- ]/.test(l))
    .slice(1)
    .map((l) => l.slice(4));
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SMTP protocol: greeting and EHLO', () => {
  it('advertises the extensions; STARTTLS before TLS, AUTH only after it', async () => {
    const { port } = await serve();
    const c = await client(port);
    expect(c.lines[0]).toBe('220 mx.test ESMTP Test');
    const plain = keywords(await c.exchange('EHLO client.test'));
    expect(plain).toEqual(['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'SIZE 1000', 'STARTTLS']);
    expect(await c.exchange('AUTH PLAIN AHUAcmlnaHQ=')).toEqual(['500 5.5.2 Command not recognized: AUTH is offered only after STARTTLS']);
    expect(await c.exchange('STARTTLS')).toEqual(['220 2.0.0 Ready to start TLS']);
    await c.starttls();
    const secure = keywords(await c.exchange('EHLO client.test'));
    expect(secure).toEqual(['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'SIZE 1000', 'AUTH PLAIN LOGIN']);
    expect(await c.exchange('STARTTLS')).toEqual(['503 5.5.1 TLS is already active']);
  });

  it('implicit TLS: secure from the start, AUTH offered, no STARTTLS', async () => {
    const { port } = await serve({}, { secure: true });
    const c = await client(port, { implicitTls: true });
    expect(keywords(await c.exchange('EHLO client.test'))).toContain('AUTH PLAIN LOGIN');
    expect(keywords(c.lines)).not.toContain('STARTTLS');
    expect(await c.exchange('AUTH PLAIN AHUAcmlnaHQ=')).toEqual(['235 2.7.0 Authentication successful']);
  });

  it('answers the simple commands with their enhanced codes', async () => {
    const { port } = await serve();
    const c = await client(port);
    expect(await c.exchange('MAIL FROM:<a@b.test>', 'HELO', 'HELO client.test', 'NOOP', 'RSET', 'VRFY someone', 'HELP', 'EXPN list', 'FOO')).toEqual([
      '503 5.5.1 Send EHLO or HELO first',
      '501 5.5.4 Syntax: HELO hostname',
      '250 mx.test Hello [127.0.0.1]',
      '250 2.0.0 OK',
      '250 2.0.0 OK',
      '252 2.1.5 Cannot VRFY the user; send the message and delivery will be attempted',
      expect.stringMatching(/^214 2\.0\.0 Commands: /),
      '502 5.5.1 Command not implemented',
      '500 5.5.2 Command not recognized',
    ]);
    expect(await c.exchange('QUIT')).toEqual(['221 2.0.0 Bye']);
    await c.closed;
  });
});

describe('SMTP protocol: PIPELINING', () => {
  it('one command at a time in order, an async hook holding back the rest, replies in order', async () => {
    const order: string[] = [];
    const { port, messages } = await serve({
      onMailFrom: async (a) => {
        await delay(30);
        order.push(`mail ${a.address}`);
      },
      onRcptTo: async (a) => {
        await delay(a.address.startsWith('slow') ? 40 : 1);
        order.push(`rcpt ${a.address}`);
        if (a.address.startsWith('no')) throw new SmtpReply(550, '5.7.1 Not this one');
      },
    });
    const c = await client(port);
    await c.exchange('EHLO client.test');
    const before = c.lines.length;
    c.write('MAIL FROM:<a@b.test>\r\nRCPT TO:<slow@b.test>\r\nRCPT TO:<no@b.test>\r\nRCPT TO:<fast@b.test>\r\nDATA\r\n');
    await c.until(/^354 /);
    expect(c.since(before)).toEqual([
      '250 2.1.0 Sender OK',
      '250 2.1.5 Recipient OK',
      '550 5.7.1 Not this one',
      '250 2.1.5 Recipient OK',
      '354 End data with <CR><LF>.<CR><LF>',
    ]);
    expect(order).toEqual(['mail a@b.test', 'rcpt slow@b.test', 'rcpt no@b.test', 'rcpt fast@b.test']);
    c.write('Subject: hi\r\n\r\nhello\r\n.\r\nRSET\r\nNOOP\r\n');
    await c.until(/^250 2\.0\.0 OK$/, 2);
    expect(c.since(before + 5)).toEqual(['250 2.0.0 OK id-1 queued', '250 2.0.0 OK', '250 2.0.0 OK']);
    expect(messages[0]).toMatchObject({ from: 'a@b.test', to: ['slow@b.test', 'fast@b.test'], transmissionType: 'ESMTP' });
    expect(messages[0]!.bytes.toString()).toBe('Subject: hi\r\n\r\nhello\r\n');
  });

  it('a hook error that is not an SmtpReply is answered 451 4.3.0', async () => {
    const { port } = await serve({
      onMailFrom: async () => {
        throw new Error('database gone');
      },
    });
    const c = await client(port);
    expect((await c.exchange('EHLO c.test', 'MAIL FROM:<a@b.test>')).at(-1)).toBe('451 4.3.0 Local error; try again later');
  });
});

describe('SMTP protocol: command lines', () => {
  it('accepts bare LF; refuses an over-long line with 500 5.5.6 without keeping it, and goes on', async () => {
    const { port } = await serve({}, { maxLineBytes: 100 });
    const c = await client(port);
    c.write('EHLO c.test\n');
    await c.until(/^250 /);
    const before = c.lines.length;
    // Many times the limit before any line end: dropped as it comes.
    for (let i = 0; i < 50; i++) c.write(`NOOP ${'x'.repeat(10_000)}`);
    c.write('\r\nNOOP\r\n');
    await c.until(/^250 2\.0\.0 OK$/);
    expect(c.since(before)).toEqual(['500 5.5.6 Line too long (at most 100 bytes)', '250 2.0.0 OK']);
    expect(await c.exchange(`NOOP ${'y'.repeat(95)}`)).toEqual(['250 2.0.0 OK']);
  });

  it('closes with 421 after too many bad commands', async () => {
    const { port } = await serve({}, { maxBadCommands: 3 });
    const c = await client(port);
    c.write('A\r\nB\r\nC\r\nD\r\nNOOP\r\n');
    await c.closed;
    expect(c.lines.slice(1)).toEqual([
      '500 5.5.2 Command not recognized',
      '500 5.5.2 Command not recognized',
      '500 5.5.2 Command not recognized',
      '421 4.7.0 Too many bad commands; closing the connection',
    ]);
  });

  it('closes an idle connection with 421 4.4.2', async () => {
    const { port } = await serve({}, { idleTimeoutMs: 200 });
    const c = await client(port);
    await c.closed;
    expect(c.lines.at(-1)).toBe('421 4.4.2 Idle timeout; closing the connection');
  });
});

describe('SMTP protocol: STARTTLS', () => {
  it('drops what the client pipelined after STARTTLS in plain text (command injection)', async () => {
    const { port, calls } = await serve();
    const c = await client(port);
    await c.exchange('EHLO c.test');
    c.write('STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nRCPT TO:<victim@b.test>\r\n');
    await c.until(/^220 2\.0\.0 /);
    await c.starttls();
    const before = c.lines.length;
    const after = await c.exchange('EHLO c.test', 'RCPT TO:<x@b.test>');
    expect(after.at(-1)).toBe('503 5.5.1 MAIL FROM first');
    expect(c.lines.slice(before).filter((l) => !/^250[- ]/.test(l))).toEqual(['503 5.5.1 MAIL FROM first']);
    expect(calls).toEqual([]);
  });

  it('forgets the EHLO and the transaction of before TLS', async () => {
    const { port } = await serve();
    const c = await client(port);
    await c.exchange('EHLO c.test', 'MAIL FROM:<a@b.test>', 'STARTTLS');
    await c.starttls();
    expect(await c.exchange('MAIL FROM:<a@b.test>')).toEqual(['503 5.5.1 Send EHLO or HELO first']);
    expect((await c.exchange('EHLO c.test', 'MAIL FROM:<a@b.test>')).at(-1)).toBe('250 2.1.0 Sender OK');
  });
});

describe('SMTP protocol: AUTH', () => {
  async function secureClient(port: number) {
    const c = await client(port);
    await c.exchange('EHLO c.test', 'STARTTLS');
    await c.starttls();
    await c.exchange('EHLO c.test');
    return c;
  }
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('PLAIN with an initial response and with a 334 continuation', async () => {
    const { port, calls } = await serve();
    const c = await secureClient(port);
    expect(await c.exchange(`AUTH PLAIN ${b64('\0ann\0wrong')}`)).toEqual(['535 5.7.8 Authentication credentials invalid']);
    expect(await c.exchange('AUTH PLAIN')).toEqual(['334 ']);
    expect(await c.exchange(b64('\0ann\0right'))).toEqual(['235 2.7.0 Authentication successful']);
    expect(await c.exchange('AUTH PLAIN')).toEqual(['503 5.5.1 Already authenticated']);
    expect(calls).toEqual(['auth PLAIN ann', 'auth PLAIN ann']);
  });

  it('LOGIN in two base64 steps, or with the username as initial response', async () => {
    const { port, calls, messages } = await serve();
    const c = await secureClient(port);
    expect(await c.exchange('AUTH LOGIN')).toEqual(['334 VXNlcm5hbWU6']);
    expect(await c.exchange(b64('bob'))).toEqual(['334 UGFzc3dvcmQ6']);
    expect(await c.exchange(b64('right'))).toEqual(['235 2.7.0 Authentication successful']);
    const d = await secureClient(port);
    expect(await d.exchange(`AUTH LOGIN ${b64('eve')}`)).toEqual(['334 UGFzc3dvcmQ6']);
    expect(await d.exchange(b64('nope'))).toEqual(['535 5.7.8 Authentication credentials invalid']);
    expect(calls).toEqual(['auth LOGIN bob', 'auth LOGIN eve']);
    await c.exchange('MAIL FROM:<a@b.test>', 'RCPT TO:<c@d.test>', 'DATA');
    await c.exchange('x\r\n.');
    expect(messages[0]!.transmissionType).toBe('ESMTPSA');
  });

  it('"*" cancels with 501 5.7.0; bad base64 is 501 5.5.2; an unknown mechanism 504 5.5.4', async () => {
    const { port, calls } = await serve();
    const c = await secureClient(port);
    await c.exchange('AUTH LOGIN');
    expect(await c.exchange('*')).toEqual(['501 5.7.0 Authentication cancelled']);
    expect(await c.exchange('AUTH PLAIN not*base64')).toEqual(['501 5.5.2 Invalid base64 in the AUTH response']);
    expect(await c.exchange(`AUTH PLAIN ${b64('no-nuls')}`)).toEqual(['501 5.5.2 PLAIN takes authzid NUL username NUL password']);
    expect(await c.exchange('AUTH CRAM-MD5')).toEqual(['504 5.5.4 Unrecognized authentication type (PLAIN or LOGIN)']);
    expect(calls).toEqual([]);
  });

  it('a 421 from the hook closes the connection', async () => {
    const { port } = await serve({
      onAuth: () => {
        throw new SmtpReply(421, '4.7.0 Too many failed authentication attempts; closing');
      },
    });
    const c = await secureClient(port);
    expect(await c.exchange(`AUTH PLAIN ${b64('\0a\0b')}`)).toEqual(['421 4.7.0 Too many failed authentication attempts; closing']);
    await c.closed;
  });
});

describe('SMTP protocol: MAIL and RCPT', () => {
  it('checks the parameters and the address syntax', async () => {
    const { port, calls } = await serve({}, { maxBadCommands: 20 });
    const c = await client(port);
    await c.exchange('EHLO c.test');
    expect(
      await c.exchange(
        'MAIL FROM:<a@b.test> SIZE=1001',
        'MAIL FROM:<a@b.test> SIZE=big',
        'MAIL FROM:<a@b.test> BODY=BINARYMIME',
        'MAIL FROM:<a@b.test> RET=FULL',
        'MAIL FROM:<zoë@b.test>',
        'MAIL FROM:a@b.test',
        'MAIL FROM:<a b@c>',
        'RCPT TO:<c@d.test>',
        'DATA',
      ),
    ).toEqual([
      '552 5.3.4 Message size 1001 exceeds the maximum message size of 1000 bytes',
      '501 5.5.4 SIZE takes a number of bytes',
      '555 5.5.4 BODY=BINARYMIME is not supported (7BIT or 8BITMIME)',
      '555 5.5.4 Unsupported MAIL parameter RET',
      '553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter',
      '501 5.5.4 Syntax: MAIL FROM:<address> [parameters] (the address goes in angle brackets)',
      '501 5.1.7 Bad address syntax: <a b@c>',
      '503 5.5.1 MAIL FROM first',
      '503 5.5.1 MAIL FROM first',
    ]);
    expect(calls).toEqual([]);
    expect(
      await c.exchange('MAIL FROM:<> BODY=8BITMIME SIZE=10', 'MAIL FROM:<a@b.test>', 'DATA', 'RCPT TO:<c@d.test> NOTIFY=NEVER', 'RCPT TO:<zoë@d.test>', 'RSET'),
    ).toEqual([
      '250 2.1.0 Sender OK',
      '503 5.5.1 A transaction is already in progress (RSET first)',
      '554 5.5.1 No valid recipients',
      '555 5.5.4 Unsupported RCPT parameter NOTIFY',
      '553 5.6.7 A non-ASCII address needs MAIL FROM with SMTPUTF8',
      '250 2.0.0 OK',
    ]);
  });

  it('UTF-8 addresses with SMTPUTF8; the Received protocol says UTF8SMTP', async () => {
    const { port, messages } = await serve();
    const c = await client(port);
    expect((await c.exchange('EHLO c.test', 'MAIL FROM:<zoë@bücher.test> SMTPUTF8', 'RCPT TO:<用户@例子.test>', 'DATA')).slice(-3)).toEqual([
      '250 2.1.0 Sender OK',
      '250 2.1.5 Recipient OK',
      '354 End data with <CR><LF>.<CR><LF>',
    ]);
    await c.exchange('Subject: ü\r\n\r\nü\r\n.');
    expect(messages[0]).toMatchObject({ from: 'zoë@bücher.test', to: ['用户@例子.test'], transmissionType: 'UTF8SMTP' });
  });

  it('HELO: plain SMTP, no ESMTP parameters', async () => {
    const { port, messages } = await serve();
    const c = await client(port);
    expect((await c.exchange('HELO c.test', 'MAIL FROM:<a@b.test> SIZE=10', 'MAIL FROM:<a@b.test>', 'RCPT TO:<c@d.test>', 'DATA')).slice(1)).toEqual([
      '555 5.5.4 MAIL parameters need EHLO (got SIZE)',
      '250 2.1.0 Sender OK',
      '250 2.1.5 Recipient OK',
      '354 End data with <CR><LF>.<CR><LF>',
    ]);
    await c.exchange('x\r\n.');
    expect(messages[0]!.transmissionType).toBe('SMTP');
  });
});

/** EHLO, MAIL, RCPT on a new connection. */
async function inTransaction(port: number) {
  const c = await client(port);
  await c.exchange('EHLO c.test', 'MAIL FROM:<a@b.test>', 'RCPT TO:<c@d.test>');
  return c;
}

describe('SMTP protocol: DATA', () => {
  it('unstuffs dots and answers with the hook reply only once it answered', async () => {
    let release!: () => void;
    const stored = new Promise<void>((r) => (release = r));
    const { port } = await serve({
      onMessage: async (m) => {
        await stored;
        return `2.0.0 OK ${Buffer.concat(m.chunks).toString('latin1')}`.replace(/\r\n/g, '|');
      },
    });
    const c = await inTransaction(port);
    await c.exchange('DATA');
    c.write('..a\r\n.b\r\n.\r\nNOOP\r\n');
    await delay(50);
    expect(c.lines.at(-1)).toBe('354 End data with <CR><LF>.<CR><LF>');
    release();
    await c.until(/^250 2\.0\.0 OK$/);
    expect(c.lines.slice(-2)).toEqual(['250 2.0.0 OK .a|b|', '250 2.0.0 OK']);
  });

  it('a message over the limit is read to its end, not kept, and refused 552 5.3.4', async () => {
    const { port, messages } = await serve({ onMailFrom: () => ({ maxSize: 50 }) });
    const c = await inTransaction(port);
    await c.exchange('DATA');
    expect(await c.exchange(`${'x'.repeat(40)}\r\n${'y'.repeat(5000)}\r\n.`)).toEqual(['552 5.3.4 Too big for this test']);
    expect(messages[0]!.message).toMatchObject({ exceeded: true, size: 5044, chunks: [] });
    expect(await c.exchange('NOOP')).toEqual(['250 2.0.0 OK']);
  });

  it('refuses an exceeded message even when the hook accepts it', async () => {
    const { port } = await serve({ onMessage: () => '2.0.0 OK' });
    const c = await inTransaction(port);
    await c.exchange('DATA');
    c.write(`${'z'.repeat(1200)}\r\n`);
    expect(await c.exchange('.')).toEqual(['552 5.3.4 Message exceeds the maximum message size of 1000 bytes']);
  });
});

describe('SMTP protocol: BDAT (CHUNKING)', () => {
  const binary = Buffer.from([0, 1, 2, 13, 10, 46, 13, 10, 255, 13, 10, 46, 46, 13, 0, 10, 13, 13, 10]);

  it('takes binary chunks exactly, whatever the TCP segments, and replies per chunk', async () => {
    const { port, messages } = await serve();
    const c = await inTransaction(port);
    const before = c.lines.length;
    // Chunks end inside a CRLF; the client's writes split the chunks elsewhere again.
    const first = binary.subarray(0, 4);
    const second = binary.subarray(4, 12);
    const third = binary.subarray(12);
    const wire = Buffer.concat([
      Buffer.from(`BDAT ${first.length}\r\n`),
      first,
      Buffer.from(`BDAT ${second.length}\r\n`),
      second,
      Buffer.from(`BDAT ${third.length} LAST\r\n`),
      third,
      Buffer.from('NOOP\r\n'),
    ]);
    for (let i = 0; i < wire.length; i += 3) {
      c.write(wire.subarray(i, i + 3));
      await delay(1);
    }
    await c.until(/^250 2\.0\.0 OK$/);
    expect(c.since(before)).toEqual(['250 2.0.0 4 octets received', '250 2.0.0 8 octets received', '250 2.0.0 OK id-1 queued', '250 2.0.0 OK']);
    expect(messages[0]!.bytes.equals(binary)).toBe(true);
    expect(messages[0]!.message.via).toBe('BDAT');
  });

  it('pipelined chunks in one write, then BDAT 0 LAST', async () => {
    const { port, messages } = await serve();
    const c = await inTransaction(port);
    const before = c.lines.length;
    c.write(Buffer.concat([Buffer.from(`BDAT ${binary.length}\r\n`), binary, Buffer.from('BDAT 0 LAST\r\n')]));
    await c.until(/queued$/);
    expect(c.since(before)).toEqual([`250 2.0.0 ${binary.length} octets received`, '250 2.0.0 OK id-1 queued']);
    expect(messages[0]!.bytes.equals(binary)).toBe(true);
  });

  it('BDAT without a transaction: the octets are consumed, then 503 5.5.1', async () => {
    const { port, messages } = await serve();
    const c = await client(port);
    await c.exchange('EHLO c.test');
    const before = c.lines.length;
    c.write('BDAT 12 LAST\r\nRSET\r\nQUIT\r\nNOOP\r\n');
    await c.until(/^250 2\.0\.0 OK$/);
    expect(c.since(before)).toEqual(['503 5.5.1 No transaction in progress (MAIL FROM first)', '250 2.0.0 OK']);
    expect(messages).toEqual([]);
    await c.exchange('MAIL FROM:<a@b.test>');
    c.write('BDAT 3 LAST\r\nabc');
    await c.until(/^554 /);
    expect(c.lines.at(-1)).toBe('554 5.5.1 No valid recipients');
  });

  it('a chunk that takes the message over the limit is dropped unread and refused 552; later chunks get 503', async () => {
    const { port, messages } = await serve({ onMailFrom: () => ({ maxSize: 10 }) });
    const c = await inTransaction(port);
    const before = c.lines.length;
    c.write('BDAT 6\r\n123456BDAT 6\r\n789012BDAT 2 LAST\r\nxyNOOP\r\n');
    await c.until(/^250 2\.0\.0 OK$/);
    expect(c.since(before)).toEqual([
      '250 2.0.0 6 octets received',
      '552 5.3.4 Too big for this test',
      '503 5.5.1 No transaction in progress (MAIL FROM first)',
      '250 2.0.0 OK',
    ]);
    expect(messages[0]!.message).toMatchObject({ exceeded: true, size: 12, chunks: [] });
  });

  it('DATA after BDAT is 503 5.5.1; bad BDAT syntax closes the connection', async () => {
    const { port } = await serve();
    const c = await inTransaction(port);
    c.write('BDAT 2\r\nabDATA\r\n');
    await c.until(/^503 /);
    expect(c.lines.at(-1)).toBe('503 5.5.1 DATA after BDAT in the same transaction (RSET first)');
    c.write('BDAT many\r\n');
    await c.closed;
    expect(c.lines.at(-1)).toBe('501 5.5.4 Syntax: BDAT <octets> [LAST]; closing the connection');
  });
});

describe('SMTP protocol: close()', () => {
  it('421 4.3.2 to idle connections; a message being stored gets its reply first', async () => {
    let release!: () => void;
    const stored = new Promise<void>((r) => (release = r));
    const { port, server } = await serve({
      onMessage: async () => {
        await stored;
        return '2.0.0 OK stored';
      },
    });
    const idle = await client(port);
    await idle.exchange('EHLO c.test');
    const busy = await inTransaction(port);
    await busy.exchange('DATA');
    busy.write('hello\r\n.\r\n');
    await delay(50);
    const closed = server.close();
    await idle.closed;
    expect(idle.lines.at(-1)).toBe('421 4.3.2 Service shutting down');
    expect(busy.lines.at(-1)).toBe('354 End data with <CR><LF>.<CR><LF>');
    release();
    await busy.closed;
    await closed;
    expect(busy.lines.slice(-2)).toEqual(['250 2.0.0 OK stored', '421 4.3.2 Service shutting down']);
  });

  it('a connection in the middle of BDAT chunks may send the rest', async () => {
    const { port, server, messages } = await serve();
    const c = await inTransaction(port);
    c.write('BDAT 3\r\nabc');
    await c.until(/octets received$/);
    const closed = server.close();
    c.write('BDAT 3 LAST\r\ndef');
    await c.closed;
    await closed;
    expect(c.lines.slice(-2)).toEqual(['250 2.0.0 OK id-1 queued', '421 4.3.2 Service shutting down']);
    expect(messages[0]!.bytes.toString()).toBe('abcdef');
  });
});

describe('SMTP protocol: close() and a TLS handshake that never comes', () => {
  it('ends a connection that opened the implicit TLS port but sent nothing, once the grace is over', async () => {
    const { port, server } = await serve({}, { secure: true, closeGraceMs: 200 });
    const silent = connect({ host: '127.0.0.1', port });
    await new Promise<void>((r) => silent.once('connect', () => r()));
    const closed = new Promise<void>((r) => silent.once('close', () => r()));
    silent.on('error', () => {});
    await server.close();
    await closed;
    expect(silent.destroyed).toBe(true);
  });
});

describe('SMTP protocol: what a client may make the server hold', () => {
  it('stops reading commands while the client does not read the replies, and goes on once it does', async () => {
    let mails = 0;
    const { port } = await serve({
      onMailFrom: () => {
        mails++;
      },
    });
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((r) => socket.once('connect', () => r()));
    // Never read: the replies (about 10 MB) pile up in front of the client.
    socket.pause();
    const total = 300_000;
    const batch = 'MAIL FROM:<a@b.test>\r\nRSET\r\n'.repeat(1_000);
    socket.write('EHLO c.test\r\n');
    for (let i = 0; i < total / 1_000; i++) socket.write(batch);
    // Until the count stops moving: the server reads no further than its replies can go.
    let last = -1;
    while (mails !== last) {
      last = mails;
      await delay(300);
    }
    expect(mails).toBeLessThan(total);
    socket.resume();
    socket.on('data', () => {});
    const started = Date.now();
    while (mails < total && Date.now() - started < 30_000) await delay(50);
    expect(mails).toBe(total);
    socket.destroy();
  });

  it('keeps many tiny pieces of a message joined, 4 KiB or more each', async () => {
    const { port, messages } = await serve({}, { size: 1_000_000 });
    const c = await client(port);
    await c.exchange('EHLO c.test', 'MAIL FROM:<a@b.test>', 'RCPT TO:<x@b.test>');
    // 20,000 one-byte chunks, then the last.
    c.write('BDAT 1\r\nx'.repeat(20_000));
    await c.until(/^250 2\.0\.0 1 octets received/, 20_000);
    await c.exchange('BDAT 0 LAST');
    expect(messages[0]!.bytes.toString()).toBe('x'.repeat(20_000));
    expect(messages[0]!.message.chunks.length).toBeLessThanOrEqual(Math.ceil(20_000 / 4096));
  });

  it('still closes an idle connection after a hook took longer than the idle timeout', async () => {
    const { port } = await serve({ onMessage: () => delay(500).then(() => '2.0.0 OK stored') }, { idleTimeoutMs: 200 });
    const c = await client(port);
    await c.exchange('EHLO c.test', 'MAIL FROM:<a@b.test>', 'RCPT TO:<x@b.test>');
    c.write('BDAT 3 LAST\r\nabc');
    await c.until(/^250 2\.0\.0 OK stored/);
    await c.closed;
    expect(c.lines.at(-1)).toBe('421 4.4.2 Idle timeout; closing the connection');
  });

  it('ends a connection whose TLS handshake after STARTTLS does not come', async () => {
    const { port } = await serve({}, { handshakeTimeoutMs: 200 });
    const c = await client(port);
    await c.exchange('EHLO c.test');
    c.send('STARTTLS');
    await c.until(/^220 2\.0\.0 /);
    await c.closed;
  });

  it('refuses a connection over the per-address limit with 421 4.7.0, and takes one again once another closed', async () => {
    const { port } = await serve({}, { maxConnectionsPerAddress: 2 });
    const first = await client(port);
    await client(port);
    const third = connect({ host: '127.0.0.1', port });
    const said = await new Promise<string>((r) => {
      let text = '';
      third.on('data', (d: Buffer) => {
        text += d.toString();
      });
      third.once('close', () => r(text));
    });
    expect(said).toBe('421 4.7.0 Too many connections from your address (at most 2); try again later\r\n');
    first.send('QUIT');
    await first.closed;
    // The count goes down when a connection has closed: a new one is greeted.
    await delay(50);
    await client(port);
  });
});
