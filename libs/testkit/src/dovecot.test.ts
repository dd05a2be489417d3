import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runsWith } from './binaries.js';
import { DOVECOT_BIN, startDovecot, type TestDovecot } from './dovecot.js';
import { testCa } from './tls.js';

const USER = 'ada@campus.example';
const TOKEN = 'access-token-for-ada';

describe.runIf(runsWith(DOVECOT_BIN))('startDovecot', () => {
  let dovecot: TestDovecot;
  beforeAll(async () => {
    dovecot = await startDovecot({ users: { [USER]: 'pw' }, xoauth2: (token) => (token === TOKEN ? USER : undefined) });
  }, 30_000);
  afterAll(() => dovecot?.close());

  async function signIn(auth: { user: string; pass?: string; accessToken?: string }): Promise<string[]> {
    const imap = new ImapFlow({
      host: dovecot.host,
      port: dovecot.port,
      secure: true,
      tls: { ca: testCa().caPem, servername: 'localhost' },
      auth,
      logger: false,
    });
    imap.on('error', () => {});
    await imap.connect();
    try {
      return (await imap.list()).filter((f) => f.specialUse === '\\Sent').map((f) => f.path);
    } finally {
      await imap.logout();
    }
  }

  it('serves IMAP over TLS from the test CA, with a Sent folder marked \\Sent', async () => {
    expect(await signIn({ user: USER, pass: 'pw' })).toEqual(['Sent']);
    await expect(signIn({ user: USER, pass: 'wrong' })).rejects.toThrow();
  });

  it('takes XOAUTH2 access tokens the callback accepts, and only those', async () => {
    expect(await signIn({ user: USER, accessToken: TOKEN })).toEqual(['Sent']);
    await expect(signIn({ user: USER, accessToken: 'forged' })).rejects.toThrow();
  });
});
