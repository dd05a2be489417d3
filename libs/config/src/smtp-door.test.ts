import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { readEnv } from './env.js';
import { parseConfig } from './load.js';

const config = (client: string, aliases = '') => `
clients:
  - { name: j1, api_key: k1-0123456789abcdef0123456789abcdef, senders: [registrar]${client} }
senders:
  - { id: registrar, from: 'Registrar <Registrar@Campus.example>', transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls }${aliases} }
`;

function configError(text: string, env: Record<string, string> = {}): string {
  try {
    parseConfig(text, env);
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('SMTP door configuration', () => {
  it('reads smtp credentials (env: secret), allow_ips and smtp_aliases', () => {
    const cfg = parseConfig(
      config(
        ", smtp: { username: j1@campus.example, password: 'env:J1_PW', allow_ips: [10.20.0.0/16, 192.0.2.7, '2001:db8::/32'] }",
        ", smtp_aliases: ['Bounces <Bounces@campus.example>']",
      ),
      { J1_PW: 'pw' },
    );
    const smtp = cfg.clients[0]!.smtp!;
    expect(smtp.username).toBe('j1@campus.example');
    expect(smtp.password!.reveal()).toBe('pw');
    expect(smtp.allowIps).toEqual(['10.20.0.0/16', '192.0.2.7', '2001:db8::/32']);
    expect(cfg.senders[0]!.smtpAliases).toEqual(['bounces@campus.example']);
  });

  it('names the field that is wrong', () => {
    expect(configError(config(', smtp: { username: j1 }'))).toContain('clients[0].smtp.password: required with username');
    expect(configError(config(', smtp: {}'))).toContain('clients[0].smtp: needs username and password, or allow_ips, or both');
    expect(configError(config(', smtp: { allow_ips: [10.0.0.0/33] }'))).toContain('clients[0].smtp.allow_ips[0]: must be an IP address or CIDR range');
    expect(configError(config(', smtp: { allow_ips: [printer.local] }'))).toContain('clients[0].smtp.allow_ips[0]');
    expect(configError(config(", smtp: { username: j1, password: 'env:NOPE' }"))).toContain('clients[0].smtp.password: environment variable NOPE is not set');
    expect(configError(config('', ', smtp_aliases: [not-an-address]'))).toContain('senders[0].smtp_aliases[0]: must be an email address');
  });

  it('refuses two clients with the same SMTP username', () => {
    const text = `
clients:
  - { name: a, api_key: k1-0123456789abcdef0123456789abcdef, smtp: { username: Dup@campus.example, password: p } }
  - { name: b, api_key: k2-0123456789abcdef0123456789abcdef, smtp: { username: dup@campus.example, password: q } }
senders:
  - { id: s, from: s@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }
`;
    expect(configError(text)).toContain('clients[1].smtp.username: "dup@campus.example" is already client "a"\'s username');
  });

  it('reads the door ports from the environment; unset means no listener', () => {
    expect(readEnv({})).toMatchObject({ smtpPort: undefined, smtpsPort: undefined });
    expect(readEnv({ RELAY_SMTP_PORT: '0', RELAY_SMTPS_PORT: '465' })).toMatchObject({ smtpPort: 0, smtpsPort: 465 });
    expect(() => readEnv({ RELAY_SMTP_PORT: 'submission' })).toThrow(/RELAY_SMTP_PORT/);
  });
});
