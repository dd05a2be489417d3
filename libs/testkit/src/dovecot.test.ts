import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasDovecot, startDovecot, type PrivateDovecot } from './dovecot.js';

describe.runIf(hasDovecot)('startDovecot', () => {
  let server: PrivateDovecot;
  beforeAll(async () => {
    server = await startDovecot([{ user: 'registrar@campus.example', password: 'pw-1' }]);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('serves IMAP to its users with their passwords, and refuses a wrong one', async () => {
    const client = new ImapFlow({
      host: server.host,
      port: server.port,
      secure: false,
      auth: { user: 'registrar@campus.example', pass: 'pw-1' },
      logger: false,
    });
    await client.connect();
    await client.append('INBOX', 'From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n');
    const box = await client.status('INBOX', { messages: true });
    expect(box ? box.messages : undefined).toBe(1);
    await client.logout();
    const wrong = new ImapFlow({
      host: server.host,
      port: server.port,
      secure: false,
      auth: { user: 'registrar@campus.example', pass: 'nope' },
      logger: false,
    });
    await expect(wrong.connect()).rejects.toThrow();
  });
});
