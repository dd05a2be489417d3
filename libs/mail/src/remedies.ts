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
    match: /ErrorInvalidUser/,
    remedy:
      'graph.mailbox names no user in this tenant. Check the address (the user principal name or primary SMTP address of a mailbox in the tenant of tenant_id): Microsoft 365 admin center → Users → Active users, or Exchange admin center → Recipients → Mailboxes.',
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

// How an admin signs a mailbox in again for an oauth2 sender: the console's button or the CLI.
const CONSENT = 'the sender\'s page in the console → "Authenticate with MFA" (or `relay senders consent <sender>`)';

// Microsoft 365 (smtp.office365.com, High Volume Email) and Google (smtp.gmail.com, the Workspace
// SMTP relay service), matched on their reply texts as nodemailer reports them: a multi-line reply
// is joined by "\n" ("535-5.7.8 Username and Password not accepted. ...\n535 5.7.8  https://...").
// The specific texts come before the generic entries that share a status code.
const PROVIDER_REMEDIES: Remedy[] = [
  {
    match: /5\.7\.139\b.*disabled for the Mailbox/is,
    remedy:
      'SMTP AUTH is switched off for this mailbox only. Microsoft 365 admin center → Users → Active users → the mailbox → Mail → Manage email apps → tick "Authenticated SMTP" → Save changes (or Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false); the change can take an hour to reach every server.',
  },
  {
    match: /5\.7\.139\b.*disabled for the Tenant/is,
    remedy:
      'SMTP AUTH is switched off for the whole tenant. To allow it for this mailbox only (the mailbox setting overrides the tenant\'s): Microsoft 365 admin center → Users → Active users → the mailbox → Mail → Manage email apps → tick "Authenticated SMTP" (or Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false). Tenant-wide: Exchange admin center → Settings → Mail flow → untick "Turn off SMTP AUTH protocol for your organization" (Set-TransportConfig -SmtpClientAuthenticationDisabled $false). Or move the sender to transport: graph, which needs no SMTP AUTH.',
  },
  {
    match: /5\.7\.139\b.*security defaults/is,
    remedy: `Security defaults in Microsoft Entra ID block password sign-ins over SMTP. Switch the sender to auth: { type: oauth2, provider: microsoft } and sign the mailbox in through ${CONSENT}, or move it to transport: graph. Turning security defaults off (Entra admin center → Identity → Overview → Properties → Manage security defaults) weakens every account and is not recommended.`,
  },
  {
    match: /5\.7\.30\b|5\.7\.139\b.*basic authentication is disabled/is,
    remedy: `Microsoft has retired basic authentication (passwords) for SMTP client submission on this tenant, so no password will work. Switch the sender to auth: { type: oauth2, provider: microsoft, user: <mailbox> } and sign the mailbox in through ${CONSENT}, or move it to transport: graph (an Entra app with the Mail.Send application permission); mail to internal recipients only can also use the microsoft365-hve preset with OAuth2. Then use Send again on the failed messages.`,
  },
  {
    match: /5\.7\.139\b/,
    remedy:
      'Microsoft refused the sign-in for SMTP AUTH: a Conditional Access policy, an authentication policy or the mailbox\'s SMTP setting blocks it. Check Microsoft 365 admin center → Users → Active users → the mailbox → Mail → Manage email apps → "Authenticated SMTP" (Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false), and Entra admin center → Monitoring → Sign-in logs for the mailbox; OAuth2 or transport: graph avoid password sign-ins altogether.',
  },
  {
    match: /5\.5\.127\b/,
    remedy:
      'Microsoft refuses access tokens that expire within minutes ("Token will expire soon"; High Volume Email checks this). The relay fetches a new token at least 10 minutes before expiry, so this points to a clock running behind on the relay\'s host: check its time synchronisation (NTP), then press Test on the sender (it fetches a token afresh) and use Send again on the failed messages.',
  },
  {
    match: /5\.7\.60\b|SendAsDenied|ErrorSendAsDenied|Client does not have permissions to send as this sender/i,
    remedy:
      "The account that signed in may not send as this From address. Exchange admin center → Recipients → Mailboxes → the From mailbox → Delegation → Send As → Edit → add the account in auth.user (or Add-RecipientPermission -Identity <from> -Trustee <auth.user> -AccessRights SendAs; allow up to an hour), or set from: to the account's own address.",
  },
  {
    match: /5\.4\.5\b.*Daily user sending (limit|quota) exceeded/is,
    remedy:
      "The Google account reached its daily sending limit (Google Workspace: 2,000 messages and 10,000 recipients a day per user; fewer for trial and personal accounts). Google lifts it within 24 hours; use Send again on the failed messages then. To stay below it, set the sender's rate.daily_recipients under the limit and spread mail over several sender accounts, or send through the Workspace SMTP relay service (Google Admin console → Apps → Google Workspace → Gmail → Routing → SMTP relay service; the google-smtp-relay preset).",
  },
  {
    match: /5\.7\.1\b.*Daily SMTP relay limit exceeded for customer/is,
    remedy:
      "The organisation reached the daily limit of the Google Workspace SMTP relay service (it grows with the number of Workspace licences). Google lifts it within 24 hours; use Send again on the failed messages then. Lower the relay senders' rate.daily_recipients so that together they stay below it, and ask the Workspace admin (Google Admin console → Apps → Google Workspace → Gmail → Routing → SMTP relay service) which other systems relay through it.",
  },
  {
    match: /5\.7\.1\b.*Daily SMTP relay limit exceeded for user/is,
    remedy:
      "The account this sender relays as reached its daily limit of the Google Workspace SMTP relay service (10,000 recipients a day per user). Google lifts it within 24 hours; use Send again on the failed messages then. Set the sender's rate.daily_recipients below 10,000 (the google-smtp-relay preset does), or spread mail over senders that sign in as different users.",
  },
  {
    match: /4\.2\.1\b.*Peak SMTP relay limit exceeded for customer/is,
    remedy:
      "The organisation sends faster than the Google Workspace SMTP relay service allows at peak, so Google defers its relay mail for a while; the relay tries again on its own. If it keeps happening, lower the relay senders' pace (rate.batch_size per rate.interval) or spread large mailings over the day.",
  },
  {
    match: /4\.2\.1\b.*receiving mail (too quickly|at a rate)/is,
    remedy:
      "The recipient's Gmail mailbox receives mail faster than Google accepts for it; the relay tries again later on its own. Nothing needs changing here unless it keeps happening for one recipient.",
  },
  {
    match: /5\.7\.9\b.*Application-specific password required|InvalidSecondFactor/is,
    remedy: `The Google account has 2-Step Verification, so Gmail refuses its normal password over SMTP. Best: switch the sender to auth: { type: oauth2, provider: google } and sign in through ${CONSENT}. Or create an app password at myaccount.google.com → Security → 2-Step Verification → App passwords (https://myaccount.google.com/apppasswords) and set it as the sender's smtp.auth.password (in Google Workspace the admin must allow them: Google Admin console → Security → Authentication → 2-Step Verification).`,
  },
  {
    // Gmail answers a refused XOAUTH2 token with the same text: the XOAUTH2 entry below covers that.
    match: /^(?![\s\S]*XOAUTH2)[\s\S]*5\.7\.8\b[\s\S]*(Username and Password not accepted|BadCredentials)/,
    remedy: `Gmail refused the user name or password. auth.user must be the full address; with 2-Step Verification only an app password works (myaccount.google.com → Security → 2-Step Verification → App passwords), and changing the account's password revokes its app passwords, so create a new one and set it as smtp.auth.password. Accounts without 2-Step Verification cannot use a password for SMTP at all: use auth: { type: oauth2, provider: google } and ${CONSENT}.`,
  },
];

const REMEDIES: Remedy[] = [
  ...GRAPH_REMEDIES,
  ...PROVIDER_REMEDIES,
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
    remedy: `The refresh token has expired or was revoked. Sign the mailbox in again through ${CONSENT}.`,
  },
  {
    // The credentials service's own text when an oauth2 sender has no usable refresh token yet.
    match: /needs consent: the provider refused its refresh token \(no refresh token is stored yet\)/,
    remedy: `Nobody has signed in for this sender yet. Open ${CONSENT}, sign in as the mailbox and accept; waiting messages are then sent on their next retry. Or import a refresh token with smtp.auth.refresh_token.`,
  },
  {
    match: /AADSTS65001|AADSTS50076|consent/i,
    remedy: `The app lacks consent for this mailbox. An administrator must grant the permission (Entra admin center → App registrations → the app → API permissions → Grant admin consent), or the mailbox owner must sign in through ${CONSENT}.`,
  },
  {
    match: /XOAUTH2|"status":"40[01]"|334 eyJ/,
    remedy:
      'The access token was refused. Check that the app has the SMTP.Send permission (or SMTP app-only access with a service principal registered in Exchange), that user: is the mailbox, and that the token is for https://outlook.office.com (Microsoft) or https://mail.google.com/ (Google).',
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
