import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { parseConfig, parseManagedSender } from './load.js';
import { UnresolvedSecret } from './secret.js';

const env = { NOREPLY_PASSWORD: 'hunter2' };

function config(sender: string): string {
  return `
clients:
  - name: app
    api_key: app-key-0123456789abcdef0123456789abcdef
    senders: [s]
senders:
${sender}
`;
}

const smtpSender = (host: string, extra: string) => `
  - id: s
    from: s@campus.example
    transport: smtp
    smtp:
      host: ${host}
      port: 587
      security: starttls
      auth: { type: password, user: s@campus.example, password: env:NOREPLY_PASSWORD }
${extra}`;

const graphSender = (extra: string) => `
  - id: s
    from: s@campus.example
    transport: graph
    graph: { tenant_id: t, client_id: c, client_secret: x, mailbox: s@campus.example }
${extra}`;

function configError(text: string): string {
  try {
    parseConfig(text, env);
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('copy_to_sent and feedback', () => {
  it('defaults the IMAP server of Microsoft 365 and Gmail submission hosts', () => {
    const m365 = parseConfig(config(smtpSender('smtp.office365.com', '    copy_to_sent: true')), env).senders[0]!;
    expect(m365.sentCopy).toEqual({
      imap: { host: 'outlook.office365.com', port: 993, security: 'tls', servername: undefined, ca: undefined, auth: undefined },
    });
    const gmail = parseConfig(config(smtpSender('smtp.gmail.com', '    copy_to_sent: true')), env).senders[0]!;
    expect(gmail.sentCopy?.imap).toMatchObject({ host: 'imap.gmail.com', port: 993, security: 'tls' });
    expect(parseConfig(config(smtpSender('smtp.gmail.com', '    copy_to_sent: false')), env).senders[0]!.sentCopy).toBeUndefined();
  });

  it('uses feedback.imap when given, with its defaults', () => {
    const s = parseConfig(config(smtpSender('mail.campus.example', '    copy_to_sent: true\n    feedback: { imap: { host: imap.campus.example } }')), env)
      .senders[0]!;
    expect(s.sentCopy?.imap).toMatchObject({ host: 'imap.campus.example', port: 993, security: 'tls' });
    expect(s.feedback).toMatchObject({ imap: { host: 'imap.campus.example' }, graph: false });
  });

  it('asks for feedback.imap where the IMAP server is not known', () => {
    expect(configError(config(smtpSender('mail.campus.example', '    copy_to_sent: true')))).toMatch(
      /senders\[0\]\.feedback\.imap: required with copy_to_sent for SMTP host mail\.campus\.example/,
    );
  });

  it('refuses copy_to_sent on a Graph sender, pointing to graph.save_to_sent_items', () => {
    expect(configError(config(graphSender('    copy_to_sent: true')))).toMatch(/senders\[0\]\.copy_to_sent: .*graph\.save_to_sent_items/);
  });

  it('names bad feedback fields', () => {
    expect(configError(config(smtpSender('smtp.gmail.com', '    feedback: { imap: { host: x, security: none } }')))).toMatch(
      /senders\[0\]\.feedback\.imap\.security: must be one of tls, starttls/,
    );
    expect(configError(config(smtpSender('smtp.gmail.com', '    feedback: { imap: { host: x, prot: 993 } }')))).toMatch(/senders\[0\]\.feedback\.imap.*prot/);
    expect(configError(config(graphSender('    feedback: { graph: true, imap: { host: x } }')))).toMatch(/senders\[0\]\.feedback\.graph: give imap or graph/);
    expect(
      configError(
        config(smtpSender('smtp.gmail.com', '    copy_to_sent: true\n    feedback: { imap: { host: x, auth: { type: password, user: u, password: p } } }')),
      ),
    ).toMatch(/senders\[0\]\.feedback\.imap\.auth: not needed: IMAP signs in with the sender's smtp\.auth/);
  });

  it('refuses copy_to_sent without SMTP credentials', () => {
    const text = config(`
  - id: s
    from: s@campus.example
    transport: smtp
    smtp: { host: smtp.gmail.com, port: 587, security: starttls }
    copy_to_sent: true`);
    expect(configError(text)).toMatch(/senders\[0\]\.copy_to_sent: needs smtp\.auth/);
  });
});

describe('feedback through the operations API', () => {
  const spec = (feedback: Record<string, unknown>) => ({
    id: 's',
    from: 's@campus.example',
    transport: 'smtp',
    smtp: { host: 'smtp.gmail.com', port: 587, security: 'starttls', auth: { type: 'password', user: 's@campus.example' } },
    copy_to_sent: true,
    feedback,
  });
  const resolve = (ref: string, key: string) => new UnresolvedSecret(key, ref);

  it('takes feedback.imap without files or passwords', () => {
    expect(parseManagedSender(spec({ imap: { host: 'imap.campus.example' } }), resolve).sentCopy?.imap.host).toBe('imap.campus.example');
  });

  it('refuses an IMAP password or a CA file', () => {
    expect(() => parseManagedSender(spec({ imap: { host: 'x', auth: { type: 'password', user: 'u', password: 'p' } } }), resolve)).toThrow(
      /^feedback\.imap\.auth: not accepted through the API/,
    );
    expect(() => parseManagedSender(spec({ imap: { host: 'x', ca_file: '/etc/ca.pem' } }), resolve)).toThrow(
      /^feedback\.imap\.ca_file: not accepted through the API/,
    );
  });

  it("refuses an IMAP password of its own in relay.yaml: the sender's smtp.auth signs in", () => {
    const text = config(smtpSender('smtp.gmail.com', '    feedback: { imap: { host: x, auth: { type: password, user: u, password: literal-pw } } }'));
    expect(() => parseConfig(text, env)).toThrow(/senders\[0\]\.feedback\.imap\.auth: not needed: IMAP signs in with the sender's smtp\.auth/);
  });
});
