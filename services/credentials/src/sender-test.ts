import type { TLSSocket } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import XOAuth2 from 'nodemailer/lib/xoauth2/index.js';
import { smtpConnectionOptions, type SenderConfig } from '@relay/config';
import { ErrorCode, RelayError } from '@relay/core';
import { diagnoseSmtpFailure, remedyFor } from '@relay/mail';
import { TestSenderResponseSchema, TestStepSchema, type TestSenderResponse, type TestStep } from '@relay/proto';
import { imapRefusal, needsImapScope, smtpTokenAuth } from './imap-scope.js';
import type { OAuthTokens } from './oauth-tokens.js';

export interface TestSenderOptions {
  /** When set, a test message is sent to this address too. */
  to?: string;
  /** Identifies the test message in the recipient's mailbox. */
  now?: () => Date;
}

type SmtpError = SMTPConnection.SMTPError;

/**
 * The "Test" button: runs the steps a delivery takes (token, connect, TLS, auth, send) one by
 * one, each with the provider's own reply, and stops at the first failure with a remedy.
 */
export async function testSender(sender: SenderConfig | undefined, id: string, tokens: OAuthTokens, opts: TestSenderOptions = {}): Promise<TestSenderResponse> {
  if (!sender) throw new RelayError(ErrorCode.NotFound, `sender "${id}" is not configured`);
  if (!sender.smtp) throw new RelayError(ErrorCode.FailedPrecondition, `sender "${id}": TestSender checks SMTP senders in this version of the relay`);
  const smtp = sender.smtp;
  const steps: TestStep[] = [];
  const step = (name: string, ok: boolean, detail: string) => steps.push(create(TestStepSchema, { name, ok, detail }));
  const finish = (remedySource?: string, own?: string) => {
    const ok = steps.every((s) => s.ok);
    const remedy = ok ? '' : (own ?? remedyFor(remedySource ?? steps.at(-1)?.detail ?? '') ?? '');
    return create(TestSenderResponseSchema, { ok, steps, remedy });
  };

  let accessToken: string | undefined;
  // A token that cannot open the mailbox over IMAP: reported, and the SMTP steps still run.
  let imapRemedy: string | undefined;
  if (smtp.auth.type === 'oauth2') {
    try {
      const t = await tokens.get(id, smtpTokenAuth(sender) ?? smtp.auth);
      accessToken = t.accessToken;
      step('token', true, `access token for ${smtp.auth.user} (${smtp.auth.provider}, ${smtp.auth.flow}), valid until ${new Date(t.expiresAt).toISOString()}`);
      if (needsImapScope(sender)) {
        const refusal = imapRefusal(sender, t.scopes);
        if (refusal) imapRemedy = 'Press "Authenticate with MFA" and sign in as the mailbox again: the new sign-in grants IMAP.AccessAsUser.All.';
        step(
          'IMAP permission',
          !refusal,
          refusal ||
            (t.scopes
              ? `the token carries IMAP.AccessAsUser.All (for ${sender.sentCopy ? 'copy_to_sent' : 'feedback.imap'})`
              : 'the identity platform did not list the scopes of the token; IMAP is tried with it'),
        );
      }
    } catch (err) {
      step('token', false, (err as Error).message);
      return finish();
    }
  }

  // Connected exactly as delivery connects (TLS 1.2 at least included). nodemailer tells the AUTH
  // mechanisms the server offers only to a custom authentication handler: this one reads them.
  let offered: string[] = [];
  const conn = new SMTPConnection({
    ...smtpConnectionOptions(smtp),
    customAuth: {
      [LIST_MECHANISMS]: (ctx) => {
        offered = ctx.authMethods;
        ctx.reject('only lists the mechanisms');
      },
    },
  });
  // Connection-level failures (refused, TLS, timeouts) arrive as 'error' events, not in callbacks.
  let failed: ((err: SmtpError) => void) | undefined;
  conn.on('error', (err: SmtpError) => failed?.(err));
  conn.on('end', () => failed?.(Object.assign(new Error('the server closed the connection'), { code: 'ECONNECTION' })));
  const phase = <T>(run: (resolve: (v: T) => void) => void, onError: (err: SmtpError) => T) =>
    new Promise<T>((resolve) => {
      failed = (err) => resolve(onError(err));
      run(resolve);
    });
  try {
    const connectErr = await phase<SmtpError | undefined>(
      (resolve) => conn.connect((err) => resolve(err ?? undefined)),
      (err) => err,
    );
    const greeting = typeof conn.lastServerResponse === 'string' ? conn.lastServerResponse : undefined;
    const where = `${smtp.host}:${smtp.port}`;
    if (connectErr) {
      // The host, the cause in words and the remedy, where the server never answered.
      const broken = await diagnoseSmtpFailure(connectErr, smtp).catch(() => undefined);
      const tlsFailure = isTlsError(connectErr) || broken?.cause.startsWith('TLS failed');
      if (tlsFailure || greeting) {
        step('connect', true, greeting ? `connected to ${where}: ${greeting}` : `connected to ${where}`);
        step('TLS', false, broken ? `${where}: ${broken.cause}` : describeSmtp(connectErr));
      } else {
        step('connect', false, `${where}: ${broken?.cause ?? describeSmtp(connectErr)}`);
      }
      return finish(undefined, broken?.remedy);
    }
    step('connect', true, `connected to ${where}`);
    if (smtp.security === 'none') step('TLS', true, 'not used (security: none)');
    else {
      const socket = conn._socket as TLSSocket;
      const cert = socket.getPeerCertificate?.();
      step(
        'TLS',
        true,
        `${smtp.security === 'tls' ? 'implicit TLS' : 'STARTTLS'} ${socket.getProtocol?.() ?? ''} ${socket.getCipher?.().name ?? ''}; certificate for ${cert?.subject?.CN ?? '?'} verified`.replace(
          /\s+/g,
          ' ',
        ),
      );
    }

    // Sends nothing: the handler above rejects at once.
    conn.login({ method: LIST_MECHANISMS }, () => {});
    const mechanisms = offered.length ? `server offers AUTH ${offered.join(' ')}` : 'server offers no AUTH';
    if (smtp.auth.type === 'none') step('auth', true, `not used (auth: none); ${mechanisms}`);
    else {
      // Submission servers take AUTH only once the connection is encrypted.
      const startTls = `The server takes no AUTH before TLS. Set security: starttls (port ${smtp.port === 25 ? 587 : smtp.port}), or security: tls on port 465, so the relay encrypts the connection and then signs in.`;
      if (offered.length === 0 && smtp.security === 'none') {
        step('auth', false, `${mechanisms} on an unencrypted connection`);
        return finish(undefined, startTls);
      }
      if (smtp.auth.type === 'oauth2' && !offered.includes('XOAUTH2')) {
        step('auth', false, `${mechanisms}; XOAUTH2 is not among them`);
        return finish('XOAUTH2');
      }
      const auth = smtp.auth;
      const authErr = await phase<SmtpError | undefined>(
        (resolve) => {
          const done = (err?: SmtpError | null) => resolve(err ?? undefined);
          if (auth.type === 'oauth2') {
            // The token comes from our own cache; XOAuth2 only formats it (no refresh settings given).
            const oauth2 = new XOAuth2({ user: auth.user, accessToken: accessToken ?? '' });
            conn.login({ oauth2 }, done);
          } else conn.login({ credentials: { user: auth.user, pass: auth.password.reveal() } }, done);
        },
        (err) => err,
      );
      if (authErr) {
        step('auth', false, `${mechanisms}; ${describeSmtp(authErr)}`);
        if (smtp.security === 'none' && /\b538\b|STARTTLS/i.test(describeSmtp(authErr))) return finish(undefined, startTls);
        return finish(describeSmtp(authErr) + (smtp.auth.type === 'oauth2' ? ' XOAUTH2' : ''));
      }
      step('auth', true, `${mechanisms}; ${typeof conn.lastServerResponse === 'string' ? conn.lastServerResponse : 'authenticated'} as ${smtp.auth.user}`);
    }

    if (opts.to) {
      const from = addressOf(sender.from);
      const now = (opts.now ?? (() => new Date()))();
      const message = await new MailComposer({
        from: sender.from,
        to: opts.to,
        subject: `Campus Relay test message from sender "${id}"`,
        text: `This message was sent by the "Test" button of Campus Relay for sender "${id}" at ${now.toISOString()}. No action is needed.`,
        headers: { 'X-Relay-Test': id },
      })
        .compile()
        .build();
      const sent = await phase<{ err: SmtpError | null; info?: SMTPConnection.SentMessageInfo }>(
        (resolve) => conn.send({ from, to: [opts.to!] }, message, (err, info) => resolve({ err: err ?? null, info })),
        (err) => ({ err }),
      );
      if (sent.err) step('send', false, describeSmtp(sent.err));
      else step('send', true, sent.info?.response ?? 'accepted');
    }
    return finish(undefined, imapRemedy);
  } finally {
    failed = undefined;
    if (conn.stage === 'connected') conn.quit();
    conn.close();
  }
}

/** A name no server offers: the custom authentication handler that only lists the offered ones. */
const LIST_MECHANISMS = 'X-RELAY-LIST-MECHANISMS';

function addressOf(from: string): string {
  return /<([^>]+)>\s*$/.exec(from)?.[1] ?? from.trim();
}

function describeSmtp(err: SmtpError): string {
  return err.response ?? err.message;
}

const TLS_CODES = /^(ETLS|EPROTO|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_TLS|ERR_SSL)/;
function isTlsError(err: SmtpError): boolean {
  const causeCode = (err as { cause?: { code?: string } }).cause?.code;
  const originalCode = (err as { originalCode?: string }).originalCode;
  return [err.code, causeCode, originalCode].some((c) => TLS_CODES.test(c ?? ''));
}
