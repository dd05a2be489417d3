/**
 * Plain-language fixes for failures campus IT staff meet when relaying through Microsoft 365,
 * Google Workspace or an SMTP server. Matched on the provider's own codes in its reply.
 */
interface Remedy {
  match: RegExp;
  remedy: string;
}

// Microsoft Graph (transport: graph). Matched on Graph's error codes, which the graph-sender puts
// first in its outcome text; these come before the SMTP entries that share a word.
const GRAPH_REMEDIES: Remedy[] = [
  {
    match: /ErrorSendAsDenied/,
    remedy:
      'The mailbox in graph.mailbox may not send as the sender\'s from: address. Grant graph.mailbox "Send As" on that address (Exchange admin center → Recipients → Mailboxes → the from: mailbox → Delegation → Send As, or Add-RecipientPermission -Identity <from> -Trustee <graph.mailbox> -AccessRights SendAs), or set from: to graph.mailbox itself.',
  },
  {
    match: /ErrorAccessDenied.*(AccessPolicy|RAOP|Access to OData is disabled)/i,
    remedy:
      "An Exchange application access policy keeps this app away from the mailbox. Add the mailbox to the policy's group (Get-ApplicationAccessPolicy shows it; check with Test-ApplicationAccessPolicy -Identity <graph.mailbox> -AppId <client_id>), or use a mailbox the policy allows.",
  },
  {
    match: /ErrorAccessDenied/,
    remedy:
      'Graph refused the app access to the mailbox. In Entra ID → App registrations → the app → API permissions, add the Microsoft Graph *application* permission Mail.Send (not the delegated one) and press "Grant admin consent"; messages with attachments over 3 MB also need Mail.ReadWrite (they are uploaded to a draft first). If both are granted, an application access policy may exclude the mailbox (Test-ApplicationAccessPolicy -Identity <graph.mailbox> -AppId <client_id>).',
  },
  {
    match: /MailboxNotEnabledForRESTAPI|MailboxNotSupportedForRESTAPI/,
    remedy:
      'graph.mailbox has no Exchange Online mailbox Graph can use: it is on-premises, inactive or soft-deleted, a guest, or has no Exchange Online licence. Assign a licence with Exchange Online, or point graph.mailbox at a cloud mailbox (on-premises mailboxes must use transport: smtp).',
  },
  {
    match: /ErrorInvalidRecipients/,
    remedy: 'Graph found a recipient address it cannot use. Check the to, cc and bcc addresses of the message.',
  },
  {
    match: /ErrorMessageSizeExceeded/,
    remedy:
      "The message is larger than the mailbox may send. Exchange Online allows 35 MB by default and up to 150 MB when raised with Set-Mailbox <graph.mailbox> -MaxSendSize 150MB (and the organisation's limit, Set-TransportConfig -MaxSendSize); otherwise send a link instead of the attachment.",
  },
  {
    match: /InvalidAuthenticationToken|ErrorInvalidToken/,
    remedy:
      "Graph refused the access token even after a new one was fetched. Check that tenant_id is the mailbox's tenant and that authority_url and graph_url belong to the same cloud (global: login.microsoftonline.com with graph.microsoft.com; US Government: login.microsoftonline.us with graph.microsoft.us; China: login.chinacloudapi.cn with microsoftgraph.chinacloudapi.cn).",
  },
  {
    match: /UnsupportedInternetMessageHeader/,
    remedy:
      'Microsoft Graph only carries custom headers whose names start with "x-". Rename the header (e.g. X-Campus-Ticket) or send the message through an SMTP sender.',
  },
];

const REMEDIES: Remedy[] = [
  ...GRAPH_REMEDIES,
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
    remedy: 'The client secret is wrong or expired. Create a new secret in Entra ID → App registrations → Certificates & secrets and update client_secret.',
  },
  {
    match: /AADSTS700082|AADSTS70008\b|invalid_grant/,
    remedy: 'The refresh token has expired or was revoked. Press "Authenticate with MFA" (AdminService.BeginConsent) to sign in to the mailbox again.',
  },
  {
    // The credentials service's own text when an oauth2 sender has no usable refresh token yet.
    match: /needs consent: the provider refused its refresh token \(no refresh token is stored yet\)/,
    remedy:
      'Nobody has signed in for this sender yet. Press "Authenticate with MFA" (AdminService.BeginConsent), sign in as the mailbox and accept; waiting messages are then sent on their next retry. Or import a refresh token with smtp.auth.refresh_token.',
  },
  {
    match: /AADSTS65001|AADSTS50076|consent/i,
    remedy:
      'The app lacks consent for this mailbox. An administrator must grant the permission in Entra ID, or the mailbox owner must sign in with "Authenticate with MFA".',
  },
  {
    match: /XOAUTH2|"status":"40[01]"|334 eyJ/,
    remedy:
      'The access token was refused. Check that the app has the SMTP.Send permission (or SMTP app-only access with a service principal registered in Exchange), that user: is the mailbox, and that the token is for https://outlook.office.com.',
  },
  {
    match: /5\.7\.(3|8)\b|535[ -]5\.7\.(3|8)|Authentication (unsuccessful|failed)|Username and Password not accepted|535[ -]5\.7\.0/i,
    remedy:
      "The server refused the user name or password. Check the sender's auth.user and password; for Microsoft 365 the user is the full mailbox address; for Gmail use an app password or OAuth2.",
  },
  {
    match:
      /self[- ]signed|unable to verify|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_HAS_EXPIRED|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|altnames|ERR_TLS_CERT_ALTNAME_INVALID|certificate/i,
    remedy:
      "The server's TLS certificate could not be verified. If the server uses a private CA, set smtp.ca_file to that CA's PEM; if the certificate is issued for another name, set smtp.servername to that name.",
  },
  {
    match: /wrong version number|ssl3_get_record|packet length too long|EPROTO/i,
    remedy: 'TLS mode and port do not match: use security: tls with port 465, and security: starttls with port 587.',
  },
  {
    match: /ENOTFOUND|EAI_AGAIN|getaddrinfo/,
    remedy: "The server's host name does not resolve. Check smtp.host for typos and that the relay's DNS resolves it (inside containers, the container's DNS).",
  },
  {
    match: /ECONNREFUSED/,
    remedy:
      'Nothing answers at that host and port. Check smtp.host and smtp.port, and that a firewall allows the connection (Microsoft 365: smtp.office365.com:587).',
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

/** A remedy for a Microsoft Graph error answer (`<code>: <message>`), from the Graph entries only. */
export function graphRemedyFor(text: string): string | undefined {
  return GRAPH_REMEDIES.find((r) => r.match.test(text))?.remedy;
}
