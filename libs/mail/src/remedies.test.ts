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
    ['AADSTS700082: The refresh token has expired due to inactivity.', /relay senders consent/],
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
    ["ErrorInvalidUser: The requested user 'nobody@campus.example' is invalid. (HTTP 404)", /graph\.mailbox names no user in this tenant/],
    ['ErrorMessageSizeExceeded: The message exceeds the maximum supported size. (HTTP 413)', /MaxSendSize/],
  ])('explains %s', (text, re) => {
    expect(remedyFor(text)).toMatch(re);
  });
  it('says nothing for an unknown failure', () => {
    expect(remedyFor('451 4.3.0 something odd')).toBeUndefined();
  });
});

// The providers' replies as nodemailer reports them (`err.response`): a multi-line reply keeps its
// lines, joined by "\n". Texts from Microsoft's and Google's servers as seen in the field.
describe('remedyFor on Microsoft 365 and Google replies', () => {
  const CONSENT = /the sender's page in the console → "Authenticate with MFA" \(or `relay senders consent <sender>`\)/;
  it.each([
    [
      '550 5.7.30 Basic authentication is not supported for Client Submission.',
      [/retired basic authentication/, /auth: \{ type: oauth2, provider: microsoft/, CONSENT, /transport: graph/],
    ],
    [
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [MN2PR05CA0004.namprd05.prod.outlook.com 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]',
      [
        /switched off for the whole tenant/,
        /Authenticated SMTP.*Set-CASMailbox/s,
        /Settings → Mail flow → untick "Turn off SMTP AUTH protocol for your organization"/,
      ],
    ],
    [
      '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [AM0PR02CA0095.eurprd02.prod.outlook.com 2026-11-30T08:12:44.123Z 08DD0F3A1B2C3D4E]',
      [/switched off for this mailbox only/, /Users → Active users → the mailbox → Mail → Manage email apps → tick "Authenticated SMTP"/],
    ],
    [
      "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator.",
      [/Security defaults/, CONSENT],
    ],
    [
      '535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [BM1P287CA0015.INDP287.PROD.OUTLOOK.COM]',
      [/retired basic authentication/, CONSENT],
    ],
    [
      '535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.',
      [/Conditional Access policy/, /Sign-in logs/],
    ],
    [
      '550 5.7.60 SMTP; Client does not have permissions to send as this sender [MW2PR1901MB2155.namprd19.prod.outlook.com]',
      [/Delegation → Send As → Edit/, /Add-RecipientPermission/],
    ],
    ['550 5.7.1 Client does not have permissions to send as this sender', [/Delegation → Send As/]],
    ['501 5.5.127 Invalid XOAUTH2 auth data - Token will expire soon', [/expire within minutes/, /NTP/]],
    [
      '550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n550-5.4.5 sending limits go to\n550 5.4.5  https://support.google.com/a/answer/166852 d2e1a72fcca58-76e7d551493sm9728466b3a.112 - gsmtp',
      [/Google account reached its daily sending limit/, /rate\.daily_recipients/],
    ],
    ['550 5.4.5 Daily user sending quota exceeded. o65sm25351206pga.71 - gsmtp', [/daily sending limit/]],
    [
      '550-5.7.1 Daily SMTP relay limit exceeded for customer. For more information on\n550-5.7.1 SMTP relay sending limits please contact your administrator or visit\n550 5.7.1  https://support.google.com/a/answer/6140680#dailylimit b6-20020a170902d88600b001967d95881csm1165800plz.51 - gsmtp',
      [/organisation reached the daily limit of the Google Workspace SMTP relay service/, /Gmail → Routing → SMTP relay service/],
    ],
    [
      '550-5.7.1 Daily SMTP relay limit exceeded for user. For more information on SMTP\n550-5.7.1 relay sending limits please contact your administrator or visit\n550 5.7.1  https://support.google.com/a/answer/6140680#dailylimit x12sm1165800plz.51 - gsmtp',
      [/account this sender relays as reached its daily limit/, /10,000/],
    ],
    [
      '450-4.2.1 Peak SMTP relay limit exceeded for customer. This is a temporary error.\n450-4.2.1 For more information on SMTP relay limits, please contact your\n450 4.2.1 administrator or visit https://support.google.com/a/answer/6140680 a1sm99 - gsmtp',
      [/Google defers its relay mail/, /tries again on its own/],
    ],
    [
      '450-4.2.1 The user you are trying to contact is receiving mail at a rate that\n450-4.2.1 prevents additional messages from being delivered. Please resend your\n450 4.2.1 message at a later time. https://support.google.com/mail/?p=ReceivingRate z3sm1 - gsmtp',
      [/recipient's Gmail mailbox receives mail faster/],
    ],
    [
      '534-5.7.9 Application-specific password required. For more information, go to\n534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor w11-20020a056512098b00b0050e8ea87dcesm1401366lft.169 - gsmtp',
      [/2-Step Verification/, /App passwords/, /provider: google/, CONSENT],
    ],
    [
      '535-5.7.8 Username and Password not accepted. For more information, go to\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials af79cd13be357-794f3061475sm18893085a.74 - gsmtp',
      [/Gmail refused the user name or password/, /App passwords/, CONSENT],
    ],
  ])('explains %s', (text, remedies) => {
    const remedy = remedyFor(text);
    for (const re of remedies) expect(remedy).toMatch(re);
  });

  it('keeps a refused XOAUTH2 token at Gmail apart from a refused password', () => {
    const reply =
      '535-5.7.8 Username and Password not accepted. For more information, go to\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1sm1 - gsmtp';
    expect(remedyFor(`${reply} XOAUTH2`)).toMatch(/access token was refused/);
    expect(remedyFor(reply)).toMatch(/Gmail refused the user name or password/);
  });

  it('still explains a generic 535 5.7.8 (Postfix) as a wrong password, not as Gmail', () => {
    expect(remedyFor('535 5.7.8 Error: authentication failed')).toMatch(/^The server refused the user name or password/);
  });
});
