/**
 * Plain-language fixes for failures campus IT staff meet when relaying through Microsoft 365,
 * Google Workspace or an SMTP server. Matched on the provider's own codes in its reply.
 */
interface Remedy {
  match: RegExp;
  remedy: string;
}

const REMEDIES: Remedy[] = [
  {
    match: /5\.7\.139/,
    remedy:
      'SMTP AUTH is disabled for this tenant or mailbox. In the Microsoft 365 admin center open the mailbox → Mail → Manage email apps and tick "Authenticated SMTP" (or run Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false); if security defaults are on, use OAuth2 or the Graph transport instead.',
  },
  {
    match: /5\.7\.30/,
    remedy:
      'Microsoft has retired basic authentication (passwords) for SMTP on this tenant. Switch the sender to auth: { type: oauth2, provider: microsoft } and use "Authenticate with MFA", or move it to transport: graph.',
  },
  {
    match: /5\.7\.60|SendAsDenied|ErrorSendAsDenied/i,
    remedy:
      'The authenticated account may not send as this From address. Grant it "Send As" on the mailbox (Exchange admin center → Recipients → Mailboxes → Delegation), or set from: to the account\'s own address.',
  },
  {
    match: /5\.7\.57/,
    remedy:
      'The server wants an authenticated client before it accepts mail. Add auth: to the sender (password or oauth2) and use port 587 with security: starttls.',
  },
  {
    match: /AADSTS7000215/,
    remedy:
      'The client secret is wrong or expired. Create a new secret in Entra ID → App registrations → Certificates & secrets and update client_secret.',
  },
  {
    match: /AADSTS700082|AADSTS70008\b|invalid_grant/,
    remedy: 'The refresh token has expired or was revoked. Press "Authenticate with MFA" (AdminService.BeginConsent) to sign in to the mailbox again.',
  },
  {
    // The credentials service's own text when an oauth2 sender has no usable refresh token yet.
    match: /needs consent: the provider refused its refresh token \(no refresh token is stored yet\)/,
    remedy: 'Nobody has signed in for this sender yet. Press "Authenticate with MFA" (AdminService.BeginConsent), sign in as the mailbox and accept; waiting messages are then sent on their next retry. Or import a refresh token with smtp.auth.refresh_token.',
  },
  {
    match: /AADSTS65001|AADSTS50076|consent/i,
    remedy: 'The app lacks consent for this mailbox. An administrator must grant the permission in Entra ID, or the mailbox owner must sign in with "Authenticate with MFA".',
  },
  {
    match: /XOAUTH2|"status":"40[01]"|334 eyJ/,
    remedy:
      'The access token was refused. Check that the app has the SMTP.Send permission (or SMTP app-only access with a service principal registered in Exchange), that user: is the mailbox, and that the token is for https://outlook.office.com.',
  },
  {
    match: /5\.7\.(3|8)\b|535[ -]5\.7\.(3|8)|Authentication (unsuccessful|failed)|Username and Password not accepted|535[ -]5\.7\.0/i,
    remedy:
      'The server refused the user name or password. Check the sender\'s auth.user and password; for Microsoft 365 the user is the full mailbox address; for Gmail use an app password or OAuth2.',
  },
  {
    match: /self[- ]signed|unable to verify|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_HAS_EXPIRED|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|altnames|ERR_TLS_CERT_ALTNAME_INVALID|certificate/i,
    remedy:
      "The server's TLS certificate could not be verified. If the server uses a private CA, set smtp.ca_file to that CA's PEM; if the certificate is issued for another name, set smtp.servername to that name.",
  },
  {
    match: /wrong version number|ssl3_get_record|packet length too long|EPROTO/i,
    remedy: 'TLS mode and port do not match: use security: tls with port 465, and security: starttls with port 587.',
  },
  {
    match: /ECONNREFUSED/,
    remedy: 'Nothing answers at that host and port. Check smtp.host and smtp.port, and that a firewall allows the connection (Microsoft 365: smtp.office365.com:587).',
  },
  {
    match: /ETIMEDOUT|timed? ?out/i,
    remedy: 'The server did not answer in time. Check that outbound connections to smtp.host:smtp.port are allowed; port 25 is blocked by many networks.',
  },
  {
    match: /5\.4\.1|Recipient address rejected|5\.1\.1|User unknown/i,
    remedy: 'The recipient address does not exist or is not accepted by the receiving domain. Check the address.',
  },
];

export function remedyFor(text: string): string | undefined {
  return REMEDIES.find((r) => r.match.test(text))?.remedy;
}
