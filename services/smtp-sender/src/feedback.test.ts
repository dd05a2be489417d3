import { readFileSync } from 'node:fs';
import { create } from '@bufbuild/protobuf';
import { connectBus, type Bus } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import { DeliveryOutcome, GetSmtpAuthResponse_Kind, GetSmtpAuthResponseSchema, MessageState } from '@relay/proto';
import { DOVECOT_BIN, dropBus, eventually, runsWith, startDovecot, testCa, testNatsUrl, uniquePrefix, type TestDovecot } from '@relay/testkit';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReportsOnce, startFeedbackReaders, type FolderCursor, type ImapReportSource } from './feedback.js';

const USER = 'registrar@campus.example';
const PASSWORD = 'mailbox-pw';
const fixture = (name: string) => readFileSync(new URL(`../../../libs/mail/test-fixtures/ndr/${name}.eml`, import.meta.url));
const POSTFIX_ID = '0193a5b2-7c4e-7d10-8a2b-3c4d5e6f7a80';
const EXCHANGE_ID = '0193a5b2-cccc-7d10-8a2b-3c4d5e6f7a84';
const logs: Array<{ obj: object; msg: string }> = [];
const log = { info: (obj: object, msg: string) => logs.push({ obj, msg }), warn: (obj: object, msg: string) => logs.push({ obj, msg }) };

describe.runIf(runsWith(DOVECOT_BIN))('delivery reports read from a mailbox over IMAP (dovecot, real NATS)', () => {
  const prefix = uniquePrefix('imapfb');
  let bus: Bus;
  let imap: TestDovecot;
  let source: ImapReportSource;
  const mailbox = async <T>(fn: (c: ImapFlow) => Promise<T>) => {
    const c = new ImapFlow({
      host: imap.host,
      port: imap.port,
      secure: true,
      tls: { ca: testCa().caPem, servername: 'localhost' },
      auth: { user: USER, pass: PASSWORD },
      logger: false,
    });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.logout();
    }
  };
  const subjects = (folder: string) =>
    mailbox(async (c) => {
      const lock = await c.getMailboxLock(folder);
      try {
        const out: string[] = [];
        for await (const m of c.fetch('1:*', { envelope: true })) out.push(m.envelope?.subject ?? '');
        return out.sort();
      } finally {
        lock.release();
      }
    });

  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'imap-feedback-test' });
    imap = await startDovecot({ users: { [USER]: PASSWORD } });
    source = {
      sender: 'registrar',
      host: imap.host,
      port: imap.port,
      security: 'tls',
      servername: 'localhost',
      ca: testCa().caPem,
      folder: 'INBOX',
      processedFolder: 'Delivery reports',
      auth: async () => create(GetSmtpAuthResponseSchema, { kind: GetSmtpAuthResponse_Kind.PASSWORD, user: USER, password: PASSWORD }),
    };
  });
  afterAll(async () => {
    await imap?.close();
    await bus?.close();
    await dropBus(prefix);
  });

  it('records each report on its message, moves it to the processed folder, and leaves other mail alone', async () => {
    for (const id of [POSTFIX_ID, EXCHANGE_ID]) {
      const base = { messageId: id, sender: 'registrar', service: 'test' };
      await bus.publishStatus({ ...base, state: MessageState.QUEUED, attempt: 0, detail: 'accepted', client: 'app', to: ['x@y.example'], recipientCount: 1 });
      await bus.publishStatus({ ...base, state: MessageState.SENT, attempt: 1, detail: '250 OK' });
    }
    const big = Buffer.concat([fixture('exchange-online-text'), Buffer.from(`\n${'padding line\n'.repeat(1_000)}`)]);
    await mailbox(async (c) => {
      for (const name of ['postfix-5.1.1', 'not-a-bounce', 'gmail-5.1.1', 'exchange-online-5.1.10']) await c.append('INBOX', fixture(name));
      await c.append('INBOX', big);
    });

    const cursor: FolderCursor = { lastUid: 0 };
    const r = await readReportsOnce(bus, source, cursor, log, 8_000);
    expect(r).toEqual({ read: 5, recorded: 2, moved: 2, left: 2, tooLarge: 1 });

    for (const id of [POSTFIX_ID, EXCHANGE_ID]) {
      const last = (await bus.history(id)).at(-1)!;
      expect(last.state).toBe(MessageState.BOUNCED);
      expect(last.outcomes.map((o) => o.outcome)).toEqual([DeliveryOutcome.BOUNCED]);
    }
    expect(await subjects('Delivery reports')).toEqual(['Undeliverable: Housing assignment', 'Undelivered Mail Returned to Sender']);
    // Gmail's report is about a message this relay does not know; the reply is no report; the big one is not read.
    expect(await subjects('INBOX')).toEqual(['Delivery Status Notification (Failure)', 'Re: Your transcript is ready', 'Undeliverable: Room change']);
    expect(logs.some((l) => l.msg === 'message too large to read as a delivery report; left in place')).toBe(true);

    // The next pass reads only what arrived since.
    expect(await readReportsOnce(bus, source, cursor, log, 8_000)).toEqual({ read: 0, recorded: 0, moved: 0, left: 0, tooLarge: 0 });
    await mailbox((c) => c.append('INBOX', fixture('postfix-5.1.1')).then(() => undefined));
    // The same report again, about a message BOUNCED already: moved, not recorded twice.
    expect(await readReportsOnce(bus, source, cursor, log, 8_000)).toEqual({ read: 1, recorded: 0, moved: 1, left: 0, tooLarge: 0 });
    expect((await subjects('Delivery reports')).length).toBe(3);
  });

  it('says to sign in again, without trying IMAP, when the credentials service says the token lacks IMAP', async () => {
    const refusal =
      'sender "registrar": its Microsoft sign-in was not granted https://outlook.office.com/IMAP.AccessAsUser.All (granted: https://outlook.office.com/SMTP.Send), so IMAP refuses its token; sign in again with Authenticate with MFA to grant IMAP.AccessAsUser.All';
    const stale = {
      ...source,
      auth: async () => create(GetSmtpAuthResponseSchema, { kind: GetSmtpAuthResponse_Kind.XOAUTH2, user: USER, accessToken: 'at-old', imapRefusal: refusal }),
    };
    await expect(readReportsOnce(bus, stale, { lastUid: 0 }, log)).rejects.toThrow(refusal);
  });

  it('fails with the server’s refusal when the sign-in is wrong', async () => {
    const wrong = { ...source, auth: async () => create(GetSmtpAuthResponseSchema, { kind: GetSmtpAuthResponse_Kind.PASSWORD, user: USER, password: 'nope' }) };
    await expect(readReportsOnce(bus, wrong, { lastUid: 0 }, log)).rejects.toMatchObject({ authenticationFailed: true });
  });

  it('reads the folder of each sender with feedback.imap on its interval, until stopped', async () => {
    const id = '0193a5b2-9999-7d10-8a2b-3c4d5e6f7a81';
    await bus.publishStatus({
      messageId: id,
      sender: 'registrar',
      service: 'test',
      state: MessageState.QUEUED,
      attempt: 0,
      detail: '',
      client: 'app',
      recipientCount: 1,
    });
    await bus.publishStatus({ messageId: id, sender: 'registrar', service: 'test', state: MessageState.SENT, attempt: 1, detail: '250 OK' });
    await mailbox((c) =>
      c
        .append('Bounces', fixture('postfix-delayed-4.4.1'))
        .catch(async () => {
          await c.mailboxCreate('Bounces');
          await c.append('Bounces', fixture('postfix-delayed-4.4.1'));
        })
        .then(() => undefined),
    );
    const sender = {
      id: 'registrar',
      transport: 'smtp',
      feedback: {
        imap: { host: imap.host, port: imap.port, security: 'tls', servername: 'localhost', ca: testCa().caPem },
        graph: false,
        folder: 'Bounces',
        processedFolder: 'Bounces/Done',
        intervalMs: 60_000,
      },
    } as unknown as SenderConfig;
    const readers = startFeedbackReaders(bus, () => [sender, { id: 'other', transport: 'smtp' } as SenderConfig], source.auth, log, 50);
    try {
      const last = await eventually(async () => {
        const ev = (await bus.history(id)).at(-1);
        return ev && ev.outcomes.length > 0 ? ev : undefined;
      });
      expect(last.outcomes.map((o) => [o.recipient, o.outcome, o.status])).toEqual([['dean@slow.example.net', DeliveryOutcome.DELAYED, '4.4.1']]);
      expect(await eventually(async () => ((await subjects('Bounces/Done')).length === 1 ? subjects('Bounces/Done') : undefined))).toEqual([
        'Delayed Mail (still being retried)',
      ]);
    } finally {
      await readers.stop();
    }
  });

  it('asks for fresh credentials on the pass after a failed sign-in, and reads with them', async () => {
    await mailbox(async (c) => {
      await c.mailboxCreate('Renewed');
      await c.append('Renewed', fixture('not-a-bounce'));
    });
    const sender = {
      id: 'registrar',
      transport: 'smtp',
      feedback: {
        imap: { host: imap.host, port: imap.port, security: 'tls', servername: 'localhost', ca: testCa().caPem },
        graph: false,
        folder: 'Renewed',
        processedFolder: 'Renewed/Done',
        intervalMs: 50,
      },
    } as unknown as SenderConfig;
    // A cache that hands out what it holds (a password changed since) unless told it was refused.
    const asked: boolean[] = [];
    const auth = async (_sender: string, opts: { tokenRejected: boolean }) => {
      asked.push(opts.tokenRejected);
      return create(GetSmtpAuthResponseSchema, {
        kind: GetSmtpAuthResponse_Kind.PASSWORD,
        user: USER,
        password: opts.tokenRejected ? PASSWORD : 'old-password',
      });
    };
    let read = 0;
    const counting = {
      info: (obj: object, msg: string) => {
        if (msg === 'read delivery reports') read += (obj as { read: number }).read;
      },
      warn: log.warn,
    };
    const readers = startFeedbackReaders(bus, () => [sender], auth, counting, 20);
    try {
      await eventually(async () => (read > 0 ? true : undefined));
    } finally {
      await readers.stop();
    }
    expect(asked.slice(0, 2)).toEqual([false, true]);
    // Once a pass signed in, the cached credentials serve again.
    expect(asked.slice(2).every((rejected) => !rejected)).toBe(true);
  });

  it('replicas share a folder: one pass per interval, and a restart goes on from where the last pass got to', async () => {
    await mailbox(async (c) => {
      for (const folder of ['Shared', 'Restarted']) {
        await c.mailboxCreate(folder);
        await c.append(folder, fixture('not-a-bounce'));
      }
    });
    // One replica's readers of `folder`: its passes (each signs in once) and the messages it read.
    const replica = (folder: string, intervalMs: number) => {
      const sender = {
        id: 'registrar',
        transport: 'smtp',
        feedback: {
          imap: { host: imap.host, port: imap.port, security: 'tls', servername: 'localhost', ca: testCa().caPem },
          graph: false,
          folder,
          processedFolder: `${folder}/Done`,
          intervalMs,
        },
      } as unknown as SenderConfig;
      const r = { passes: 0, read: 0, readers: undefined as unknown as { stop(): Promise<void> } };
      const counting = {
        info: (obj: object, msg: string) => {
          if (msg === 'read delivery reports') r.read += (obj as { read: number }).read;
        },
        warn: log.warn,
      };
      const auth = async () => {
        r.passes++;
        return source.auth();
      };
      r.readers = startFeedbackReaders(bus, () => [sender], auth, counting, 20);
      return r;
    };

    // Two replicas find the folder due at once: one reads it, the other leaves it for the interval.
    const a = replica('Shared', 60_000);
    const b = replica('Shared', 60_000);
    await eventually(async () => (a.read + b.read > 0 ? true : undefined));
    await Promise.all([a.readers.stop(), b.readers.stop()]);
    expect(a.passes + b.passes).toBe(1);
    expect(a.read + b.read).toBe(1);

    // Stopped and started again, a reader does not read the message its earlier passes read.
    const before = replica('Restarted', 100);
    await eventually(async () => (before.read > 0 ? true : undefined));
    await before.readers.stop();
    expect(before.read).toBe(1);
    const after = replica('Restarted', 100);
    // A second pass begun means the first has ended (one pass per sender at a time).
    await eventually(async () => (after.passes >= 2 ? true : undefined));
    await after.readers.stop();
    expect(after.read).toBe(0);
  });
});

describe('report reader after the credentials service said the token lacks IMAP (real NATS)', () => {
  const prefix = uniquePrefix('imapfb-scope');
  let bus: Bus;
  beforeAll(async () => {
    bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'imap-feedback-scope-test' });
  });
  afterAll(async () => {
    await bus?.close();
    await dropBus(prefix);
  });

  it('logs the remedy and asks for a fresh token on the next pass', async () => {
    const refusal =
      'sender "renewing": its Microsoft sign-in was not granted https://outlook.office.com/IMAP.AccessAsUser.All (granted: https://outlook.office.com/SMTP.Send), so IMAP refuses its token; sign in again with Authenticate with MFA to grant IMAP.AccessAsUser.All';
    const sender = {
      id: 'renewing',
      transport: 'smtp',
      feedback: { imap: { host: '127.0.0.1', port: 993, security: 'tls' }, graph: false, folder: 'INBOX', processedFolder: 'Done', intervalMs: 50 },
    } as unknown as SenderConfig;
    const asked: boolean[] = [];
    const warnings: string[] = [];
    const auth = async (_sender: string, opts: { tokenRejected: boolean }) => {
      asked.push(opts.tokenRejected);
      return create(GetSmtpAuthResponseSchema, { kind: GetSmtpAuthResponse_Kind.XOAUTH2, user: USER, accessToken: 'at', imapRefusal: refusal });
    };
    const readers = startFeedbackReaders(
      bus,
      () => [sender],
      auth,
      { info() {}, warn: (obj: object) => warnings.push(String((obj as { err?: unknown }).err)) },
      20,
    );
    try {
      await eventually(async () => (asked.length >= 2 ? true : undefined));
    } finally {
      await readers.stop();
    }
    expect(asked.slice(0, 2)).toEqual([false, true]);
    expect(warnings[0]).toContain('sign in again with Authenticate with MFA to grant IMAP.AccessAsUser.All');
  });
});
