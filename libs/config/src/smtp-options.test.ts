import { describe, expect, it } from 'vitest';
import { parseConfig } from './load.js';
import { smtpConnectionOptions } from './smtp-options.js';

const smtpOf = (smtp: string) =>
  parseConfig(
    `clients: [{ name: app, api_key: test-key-0123456789abcdef0123456789, senders: [s] }]\nsenders:\n  - { id: s, from: s@campus.example, transport: smtp, smtp: ${smtp} }\n`,
    {},
  ).senders[0]!.smtp!;

describe('smtpConnectionOptions', () => {
  it('maps each security mode and keeps TLS 1.2 as the floor', () => {
    const implicit = smtpConnectionOptions(smtpOf('{ host: mail.campus.example, port: 465, security: tls, servername: relay.campus.example }'));
    expect(implicit).toMatchObject({ host: 'mail.campus.example', port: 465, secure: true, requireTLS: false, ignoreTLS: false });
    expect(implicit.tls).toEqual({ minVersion: 'TLSv1.2', servername: 'relay.campus.example' });
    expect(smtpConnectionOptions(smtpOf('{ host: h.example, port: 587, security: starttls }'))).toMatchObject({
      secure: false,
      requireTLS: true,
      ignoreTLS: false,
      tls: { minVersion: 'TLSv1.2' },
    });
    expect(smtpConnectionOptions(smtpOf('{ host: h.example, port: 2525, security: none }'))).toMatchObject({
      secure: false,
      requireTLS: false,
      ignoreTLS: true,
    });
  });
});
