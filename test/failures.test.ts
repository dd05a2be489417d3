import { MessageState } from '@relay/proto';
import {
  answering,
  clientEntry,
  FAST_DELIVERY,
  historyStates,
  mailsWithId,
  newClient,
  PROVIDER_REPLIES,
  type SmtpReply,
  smtpSender,
  type Stack,
  startSmtpServer,
  startStack,
  type TestClient,
  type TestSmtpServer,
  uncleanExits,
  waitForMail,
  waitForState,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const AUTH = { user: 'relay@campus.example', password: 'right-password' };
const TRY_LATER: SmtpReply = { code: 451, message: '4.7.0 Try again later' };
const SEND_AS_DENIED: SmtpReply = {
  code: 550,
  message: '5.7.60 SMTP; Client does not have permissions to send as this sender [SendAsDenied]',
};

let badAuth: TestSmtpServer;
let flaky: TestSmtpServer;
let denying: TestSmtpServer;
let retired: TestSmtpServer;
let stack: Stack;
let client: TestClient;
const app = newClient('ops-app', ['bad-auth', 'flaky', 'denied', 'basic-auth-retired']);

beforeAll(async () => {
  [badAuth, flaky, denying, retired] = await Promise.all([
    // What Postfix/Dovecot answer to a wrong password.
    startSmtpServer({ security: 'starttls', authFailure: { code: 535, message: '5.7.8 Error: authentication failed' } }),
    // Refuses the first message it is offered, accepts from then on.
    startSmtpServer({
      security: 'starttls',
      users: { [AUTH.user]: AUTH.password },
      reply: (ctx) => (ctx.phase === 'data' && ctx.attempt === 1 ? TRY_LATER : undefined),
    }),
    startSmtpServer({ security: 'starttls', users: { [AUTH.user]: AUTH.password }, reply: (ctx) => (ctx.phase === 'data' ? SEND_AS_DENIED : undefined) }),
    // Exchange Online once basic authentication for SMTP is retired: every password AUTH gets 550 5.7.30.
    startSmtpServer({ security: 'starttls', users: { [AUTH.user]: AUTH.password }, ...answering(PROVIDER_REPLIES.basicAuthRetired) }),
  ]);
  stack = await startStack({
    label: 'failures',
    config: {
      clients: [clientEntry(app)],
      senders: [
        smtpSender({ id: 'bad-auth', server: badAuth, auth: { user: AUTH.user, password: 'wrong-password' } }),
        smtpSender({ id: 'flaky', server: flaky, auth: AUTH }),
        smtpSender({ id: 'denied', server: denying, auth: AUTH }),
        smtpSender({ id: 'basic-auth-retired', server: retired, auth: AUTH }),
      ],
      delivery: FAST_DELIVERY,
    },
  });
  client = stack.client(app.apiKey);
});

afterAll(async () => {
  const results = await stack?.stop();
  await Promise.all([badAuth?.close(), flaky?.close(), denying?.close(), retired?.close()]);
  expect(uncleanExits(results ?? [])).toEqual([]);
});

describe('provider answers decide the outcome', () => {
  it('a refused password (535 5.7.8) fails permanently after one attempt', async () => {
    const res = await client.sendMail({ sender: 'bad-auth', to: ['ada@students.campus.example'], subject: 'wrong password', text: 'x' });
    const status = await waitForState(client, res.messageId, [MessageState.FAILED]);
    expect(status.attempts).toBe(1);
    expect(status.lastError).toContain('535 5.7.8');
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'FAILED']);
    expect(badAuth.authAttempts.length).toBeGreaterThanOrEqual(1);
    expect(badAuth.authAttempts.every((a) => !a.accepted && a.username === AUTH.user)).toBe(true);
    expect(badAuth.messages).toHaveLength(0);
  });

  it('a 451 is retried: RETRYING with the server text, then SENT on attempt 2', async () => {
    const res = await client.sendMail({ sender: 'flaky', to: ['bob@students.campus.example'], subject: 'try again', text: 'x' });
    const status = await waitForState(client, res.messageId, [MessageState.SENT]);
    expect(status.attempts).toBe(2);
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'RETRYING', 'SENDING', 'SENT']);
    const retrying = status.history.find((h) => h.state === MessageState.RETRYING)!;
    expect(retrying.detail).toContain('451 4.7.0 Try again later');
    expect(retrying.attempt).toBe(1);
    expect(status.history.at(-1)!.attempt).toBe(2);
    const mail = await waitForMail(flaky, res.messageId);
    expect(mail.parsed.subject).toBe('try again');
    expect(mailsWithId(flaky, res.messageId)).toHaveLength(1);
  });

  it('a 5xx on DATA (550 5.7.60 SendAsDenied) fails at once, with the server text and no retry', async () => {
    const res = await client.sendMail({ sender: 'denied', to: ['carol@students.campus.example'], subject: 'send as', text: 'x' });
    const status = await waitForState(client, res.messageId, [MessageState.FAILED]);
    expect(status.attempts).toBe(1);
    expect(status.lastError).toContain('5.7.60');
    expect(status.lastError).toContain('SendAsDenied');
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'FAILED']);
    expect(denying.messages).toHaveLength(0);
  });

  it('550 5.7.30 (basic authentication retired) fails at once, and last_error says how to move to OAuth2', async () => {
    const res = await client.sendMail({ sender: 'basic-auth-retired', to: ['dave@students.campus.example'], subject: 'password sender', text: 'x' });
    const status = await waitForState(client, res.messageId, [MessageState.FAILED]);
    expect(status.attempts).toBe(1);
    expect(status.lastError).toContain('550 5.7.30 Basic authentication is not supported for Client Submission.');
    expect(status.lastError).toMatch(
      /retired basic authentication.*auth: \{ type: oauth2, provider: microsoft.*"Authenticate with MFA" \(or `relay senders consent <sender>`\)/s,
    );
    expect(historyStates(status)).toEqual(['QUEUED', 'SENDING', 'FAILED']);
    expect(retired.authAttempts.every((a) => !a.accepted && a.username === AUTH.user)).toBe(true);
    expect(retired.messages).toHaveLength(0);
  });
});
