import { describe, expect, it } from 'vitest';
import { authOf, transportOf } from './sender-text';

describe('authOf', () => {
  it('names how each kind of sender signs in', () => {
    expect(authOf({ transport: 'graph', graph: { mailbox: 'a@campus.example' } })).toBe('app-only (client secret)');
    expect(authOf({ transport: 'graph', graph: { mailbox: 'a@campus.example', client_certificate: { certificate_pem: '-----BEGIN' } } })).toBe(
      'app-only (certificate)',
    );
    expect(authOf({ transport: 'graph', graph: { mailbox: 'a@campus.example', flow: 'refresh_token' } })).toBe('delegated (a@campus.example signs in)');
    expect(authOf({ transport: 'smtp', smtp: { auth: { type: 'oauth2', provider: 'microsoft', flow: 'refresh_token' } } })).toBe(
      'OAuth2 microsoft (refresh_token)',
    );
    expect(authOf({ transport: 'smtp', smtp: { auth: { type: 'password', user: 'b@campus.example' } } })).toBe('password (b@campus.example)');
    expect(authOf({ transport: 'smtp', smtp: {} })).toBe('none');
  });

  it('names the transport with the SMTP host and port', () => {
    expect(transportOf({ transport: 'graph' })).toBe('Graph API');
    expect(transportOf({ transport: 'smtp', smtp: { host: 'smtp.office365.com', port: 587 } })).toBe('SMTP smtp.office365.com:587');
  });
});
