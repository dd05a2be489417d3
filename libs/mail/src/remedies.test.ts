import { describe, expect, it } from 'vitest';
import { remedyFor } from './remedies.js';

describe('remedyFor', () => {
  it.each([
    ['535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.', /Authenticated SMTP/],
    ['550 5.7.30 Basic authentication is not supported for Client Submission.', /retired basic authentication/],
    ['535 5.7.3 Authentication unsuccessful', /user name or password/],
    ['535 5.7.8 Error: authentication failed', /user name or password/],
    ['554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException; 5.7.60', /Send As/],
    ['530 5.7.57 Client not authenticated to send mail.', /authenticated client/],
    ['AADSTS7000215: Invalid client secret provided.', /client secret is wrong/],
    ['AADSTS700082: The refresh token has expired due to inactivity.', /Authenticate with MFA/],
    ['sender "x" needs consent: the provider refused its refresh token (no refresh token is stored yet); press "Authenticate with MFA"', /Nobody has signed in for this sender yet/],
    ['self-signed certificate in certificate chain', /ca_file/],
    ['connect ECONNREFUSED 127.0.0.1:587', /Nothing answers/],
  ])('explains %s', (text, re) => {
    expect(remedyFor(text)).toMatch(re);
  });
  it('says nothing for an unknown failure', () => {
    expect(remedyFor('451 4.3.0 something odd')).toBeUndefined();
  });
});
