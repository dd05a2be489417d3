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
    [
      'sender "x" needs consent: the provider refused its refresh token (no refresh token is stored yet); press "Authenticate with MFA"',
      /Nobody has signed in for this sender yet/,
    ],
    ['self-signed certificate in certificate chain', /ca_file/],
    ['connect ECONNREFUSED 127.0.0.1:587', /Nothing answers/],
    ['getaddrinfo ENOTFOUND smtp.offfice365.com', /host name does not resolve/],
    [
      'ErrorSendAsDenied: The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account. (HTTP 403)',
      /graph\.mailbox "Send As"/,
    ],
    [
      'ErrorAccessDenied: Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings. (HTTP 403)',
      /application access policy keeps this app away/,
    ],
    ['ErrorAccessDenied: Access is denied. Check credentials and try again. (HTTP 403)', /application\* permission Mail\.Send/],
    ['MailboxNotEnabledForRESTAPI: The mailbox is either inactive, soft-deleted, or is hosted on-premise. (HTTP 404)', /no Exchange Online mailbox/],
    ['ErrorInvalidRecipients: At least one recipient is not valid. (HTTP 400)', /recipient address/],
    ['ErrorMessageSizeExceeded: The message exceeds the maximum supported size. (HTTP 413)', /MaxSendSize/],
  ])('explains %s', (text, re) => {
    expect(remedyFor(text)).toMatch(re);
  });
  it('says nothing for an unknown failure', () => {
    expect(remedyFor('451 4.3.0 something odd')).toBeUndefined();
  });
});
