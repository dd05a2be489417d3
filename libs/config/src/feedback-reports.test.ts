import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { FEEDBACK_INTERVAL_MS } from './feedback.js';
import { parseConfig } from './load.js';

const env = { API_KEY: 'app-key-0123456789abcdef0123456789ab', SMTP_PASSWORD: 'pw' };

function withFeedback(
  feedback: string,
  sender = 'transport: smtp\n    smtp: { host: smtp.campus.example, port: 587, security: starttls, auth: { type: password, user: registrar@campus.example, password: env:SMTP_PASSWORD } }',
): string {
  return `
clients:
  - name: app
    api_key: env:API_KEY
    senders: [registrar]
senders:
  - id: registrar
    from: registrar@campus.example
    ${sender}
    feedback: ${feedback}
`;
}

function configError(text: string): string {
  try {
    parseConfig(text, env);
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('sender feedback', () => {
  it('reads imap with its defaults: port 993 over TLS, INBOX, reports moved to "Delivery reports"', () => {
    const cfg = parseConfig(withFeedback('{ imap: { host: outlook.office365.com } }'), env);
    expect(cfg.senders[0]!.feedback).toEqual({
      imap: { host: 'outlook.office365.com', port: 993, security: 'tls', servername: undefined, ca: undefined },
      graph: false,
      folder: 'INBOX',
      processedFolder: 'Delivery reports',
      intervalMs: FEEDBACK_INTERVAL_MS,
    });
    const custom = parseConfig(
      withFeedback('{ imap: { host: imap.campus.example, port: 143, security: starttls }, folder: Bounces, processed_folder: Bounces/Done, interval: 5m }'),
      env,
    );
    expect(custom.senders[0]!.feedback).toEqual({
      imap: { host: 'imap.campus.example', port: 143, security: 'starttls', servername: undefined, ca: undefined },
      graph: false,
      folder: 'Bounces',
      processedFolder: 'Bounces/Done',
      intervalMs: 300_000,
    });
  });

  it('takes feedback.imap for a delegated Microsoft sign-in: its consent then asks for IMAP.AccessAsUser.All too', () => {
    const delegated = parseConfig(
      withFeedback(
        '{ imap: { host: outlook.office365.com } }',
        'transport: smtp\n    smtp: { host: smtp.office365.com, port: 587, security: starttls, auth: { type: oauth2, provider: microsoft, tenant_id: t, client_id: c, user: registrar@campus.example } }',
      ),
      env,
    );
    expect(delegated.senders[0]!.feedback?.imap).toMatchObject({ host: 'outlook.office365.com', port: 993, security: 'tls' });
  });

  it('takes feedback.graph for a delegated Graph sign-in: its consent then asks for Mail.ReadWrite too', () => {
    const delegated = parseConfig(
      withFeedback(
        '{ graph: true }',
        'transport: graph\n    graph: { flow: refresh_token, tenant_id: t, client_id: c, client_secret: s, mailbox: registrar@campus.example }',
      ),
      env,
    );
    expect(delegated.senders[0]!.graph?.flow).toBe('refresh_token');
    expect(delegated.senders[0]!.feedback?.graph).toBe(true);
  });

  it('refuses feedback with neither or both ways to read, the same folder twice, and imap without SMTP sign-in', () => {
    expect(configError(withFeedback('{ folder: INBOX }'))).toContain('needs imap: { host, port, security } or graph: true, one of them');
    expect(configError(withFeedback('{ imap: { host: imap.campus.example }, processed_folder: INBOX }'))).toContain(
      'senders[0].feedback.processed_folder: must differ from folder',
    );
    expect(configError(withFeedback('{ graph: true }'))).toContain('senders[0].feedback.graph: only for transport: graph');
    expect(configError(withFeedback('{ imap: { host: imap.campus.example, auth: { type: password } } }'))).toContain(
      "senders[0].feedback.imap.auth: not needed: IMAP signs in with the sender's smtp.auth (the same password or OAuth2 token)",
    );
    expect(
      configError(withFeedback('{ imap: { host: imap.campus.example } }', 'transport: smtp\n    smtp: { host: 127.0.0.1, port: 2525, security: none }')),
    ).toContain("senders[0].feedback.imap: needs the sender's smtp.auth (password or oauth2) to sign in");
  });
});
