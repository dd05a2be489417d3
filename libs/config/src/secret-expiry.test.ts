import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { readEnv } from './env.js';
import { parseConfig } from './load.js';

const clients = `clients: [{ name: app, api_key: app-key-0123456789abcdef0123456789, senders: [g] }]\n`;
const graph = (extra: string) =>
  `${clients}senders:\n  - { id: g, from: g@campus.example, transport: graph, graph: { tenant_id: t, client_id: c, client_secret: s3cret, mailbox: g@campus.example${extra} } }\n`;
const smtp = (extra: string) =>
  `${clients}senders:\n  - { id: g, from: g@campus.example, transport: smtp, smtp: { host: smtp.office365.com, port: 587, security: starttls, auth: { type: oauth2, provider: microsoft, flow: client_credentials, tenant_id: t, client_id: c, client_secret: s3cret, user: g@campus.example${extra} } } }\n`;

function errorOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (isConfigError(err)) return err.message;
    throw err;
  }
  throw new Error('no error');
}

describe('client_secret_expires_at', () => {
  it('is read next to a Graph or SMTP OAuth2 client secret, as a date (00:00 UTC) or a date-time', () => {
    expect(parseConfig(graph(', client_secret_expires_at: 2027-06-30'), {}).senders[0]!.graph!.clientSecretExpiresAt).toEqual(new Date('2027-06-30T00:00:00Z'));
    const auth = parseConfig(smtp(', client_secret_expires_at: "2027-06-30T12:30:00+02:00"'), {}).senders[0]!.smtp!.auth;
    expect(auth.type === 'oauth2' && auth.clientSecretExpiresAt).toEqual(new Date('2027-06-30T10:30:00Z'));
    // Optional: nothing known without it.
    expect(parseConfig(graph(''), {}).senders[0]!.graph!.clientSecretExpiresAt).toBeUndefined();
  });

  it('names the field when the date is not one, or belongs to no client secret', () => {
    expect(errorOf(() => parseConfig(graph(', client_secret_expires_at: 30.06.2027'), {}))).toBe(
      'relay.yaml: senders[0].graph.client_secret_expires_at: must be an ISO 8601 date or date-time, e.g. 2027-06-30 or 2027-06-30T12:00:00Z',
    );
    expect(errorOf(() => parseConfig(smtp(', client_secret_expires_at: 2027-02-30T25:00:00Z'), {}))).toMatch(
      /^relay\.yaml: senders\[0\]\.smtp\.auth\.client_secret_expires_at: must be an ISO 8601 date/,
    );
    expect(
      errorOf(() =>
        parseConfig(
          `${clients}console: { issuer: "https://idp.campus.example", client_id: a, admins: [a@campus.example], client_secret_expires_at: 2027-06-30 }\nsenders: [{ id: g, from: g@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }]\n`,
          {},
        ),
      ),
    ).toBe('relay.yaml: console.client_secret_expires_at: is the expiry of client_secret, which is not set');
  });

  it('is read for the console', () => {
    const cfg = parseConfig(
      `${clients}console: { issuer: "https://idp.campus.example", client_id: a, client_secret: x, client_secret_expires_at: 2027-01-15, admins: [a@campus.example] }\nsenders: [{ id: g, from: g@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }]\n`,
      {},
    );
    expect(cfg.console?.clientSecretExpiresAt).toEqual(new Date('2027-01-15T00:00:00Z'));
  });
});

describe('RELAY_TOKEN_KEEP_ALIVE', () => {
  it('is off unless set, and a duration between 1h and 89d', () => {
    expect(readEnv({}).tokenKeepAliveMs).toBeUndefined();
    expect(readEnv({ RELAY_TOKEN_KEEP_ALIVE: '30d' }).tokenKeepAliveMs).toBe(30 * 86_400_000);
    expect(errorOf(() => readEnv({ RELAY_TOKEN_KEEP_ALIVE: 'monthly' }))).toMatch(/^RELAY_TOKEN_KEEP_ALIVE: invalid duration "monthly"/);
    expect(errorOf(() => readEnv({ RELAY_TOKEN_KEEP_ALIVE: '120d' }))).toBe(
      'RELAY_TOKEN_KEEP_ALIVE: must be between 1h and 89d (refresh tokens lapse after 90 days unused), e.g. 30d; got "120d"',
    );
  });
});
