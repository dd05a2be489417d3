import type { PresetName } from './presets.js';
import type { Secret } from './secret.js';

/** One client's bounds; an absent field is no bound. */
export interface ClientLimits {
  messagesPerSecond: number | undefined;
  bytesPerSecond: number | undefined;
  /** Messages accepted and not yet sent, failed or expired. */
  maxStoredMessages: number | undefined;
  maxStoredBytes: number | undefined;
  /** Recipients over the last 24 h, so that one client cannot use up a shared sender's daily cap. */
  dailyRecipients: number | undefined;
}

/** Where a sender or client is defined: relay.yaml, or the operations API (the registry). */
export type ManagedBy = 'file' | 'api';

/** An API key the relay made for a client: only its SHA-256 digest is kept. */
export interface ClientKey {
  id: string;
  /** SHA-256 of the key, hex. */
  digest: string;
  /** Epoch ms after which the key no longer works (a rotated key's overlap); absent: no end. */
  expiresAt?: number;
}

export interface ClientConfig {
  name: string;
  /** The key relay.yaml gives (api_key); a client managed through the API has keys instead. */
  apiKey: Secret | undefined;
  keys?: ClientKey[];
  managedBy?: ManagedBy;
  /** The settings as written (a relay.yaml entry without api_key and passwords), for the operations API. */
  spec?: Record<string, unknown>;
  senders: string[];
  admin: boolean;
  limits: ClientLimits;
  /** Submission over the SMTP door; absent: this client cannot use it. */
  smtp?: ClientSmtpConfig;
  /** Where the state changes of this client's messages are posted. */
  webhooks?: WebhookConfig[];
  /** Recipients that hard-bounced within `forMs` are refused or flagged at SendMail; absent: off. */
  suppression?: { mode: 'refuse' | 'flag'; forMs: number };
}

/** A state a webhook may subscribe to; the event's type on the wire is `message.<name>`. */
export type WebhookEventName = 'queued' | 'sending' | 'sent' | 'retrying' | 'failed' | 'bounced';

export interface WebhookConfig {
  url: string;
  /**
   * relay.yaml: a Standard Webhooks secret, `whsec_<base64>` (checked when resolved). Absent for a
   * client managed through the API: relay-credentials keeps its secret and signs its deliveries.
   */
  secret?: Secret;
  /** The secret being replaced: deliveries carry a signature with each while it is set. */
  previousSecret?: Secret;
  events: WebhookEventName[];
  /** A client managed through the API: when its signing secret was made (CreateWebhookSecret); absent: none yet. */
  secretCreatedAt?: string;
}

export interface ClientSmtpConfig {
  /** AUTH PLAIN/LOGIN credentials (both or neither). */
  username: string | undefined;
  password: Secret | undefined;
  /** A client managed through the API: SHA-256 (hex) of lowercased username, NUL, password, instead of the password. */
  passwordDigest?: string;
  /** Source addresses/ranges that may submit without AUTH (printers, scanners). */
  allowIps: string[];
}

export type SmtpAuthConfig =
  | { type: 'none' }
  | { type: 'password'; user: string; password: Secret }
  | {
      type: 'oauth2';
      provider: 'microsoft' | 'google';
      /** service_account: Google domain-wide delegation (JWT bearer grant, RFC 7523) with serviceAccount. */
      flow: 'client_credentials' | 'refresh_token' | 'service_account';
      tenantId: string | undefined;
      /** With flow: service_account, the service account's unique ID (client_id of its key file) when known, else ''. */
      clientId: string;
      clientSecret: Secret | undefined;
      /** client_secret_expires_at: when the client secret stops working, if configured. */
      clientSecretExpiresAt?: Date | undefined;
      /** Instead of clientSecret: a certificate credential (Microsoft only). */
      clientCertificate?: ClientCertificateConfig | undefined;
      user: string;
      refreshToken: Secret | undefined;
      /** flow: service_account only. */
      serviceAccount?: GoogleServiceAccountConfig | undefined;
      authorityUrl: string | undefined;
      tokenUrl: string | undefined;
    };

/** A Google service account key (relay.yaml `service_account:` or `service_account_file:`). */
export interface GoogleServiceAccountConfig {
  /** The service account's address (iss of the JWT); undefined where the key file was not read (services without secrets). */
  clientEmail: string | undefined;
  /** PKCS#8 PEM of its RSA key once resolved. */
  privateKey: Secret;
  /** The key's id (private_key_id of a key file), sent as the JWT's kid. */
  privateKeyId: string | undefined;
  /** service_account_file, when the key came from one. */
  file: string | undefined;
}

export interface SmtpConfig {
  host: string;
  port: number;
  security: 'tls' | 'starttls' | 'none';
  servername: string | undefined;
  caFile: string | undefined;
  /** PEM text of ca_file, read when the config is loaded. */
  ca: string | undefined;
  auth: SmtpAuthConfig;
  pool: { maxConnections: number; maxMessages: number };
  timeouts: { connectMs: number; greetingMs: number; socketMs: number };
}

/** An Entra ID application's certificate credential (relay.yaml `client_certificate:`). */
export interface ClientCertificateConfig {
  /** PEM of the certificate (the app's own first; any others its chain). */
  certificatePem: string;
  certificateFile: string | undefined;
  /** Hex SHA-256 thumbprint (the x5t#S256 of client assertions). */
  thumbprintSha256: string;
  /** Hex SHA-1 thumbprint, as the Entra admin center lists it. */
  thumbprint: string;
  /** The certificate's notAfter: the credential stops working then. */
  notAfter: Date;
  /** PKCS#8 PEM once resolved (checked to belong to the certificate). */
  privateKey: Secret;
}

export interface GraphConfig {
  /**
   * client_credentials (undefined: the same): an app-only token with the Mail.Send application
   * permission; refresh_token: a delegated Mail.Send token from the mailbox's own sign-in (BeginConsent).
   */
  flow?: 'client_credentials' | 'refresh_token' | undefined;
  tenantId: string;
  clientId: string;
  /** One of clientSecret and clientCertificate is set. */
  clientSecret: Secret | undefined;
  /** client_secret_expires_at: when the client secret stops working, if configured. */
  clientSecretExpiresAt?: Date | undefined;
  clientCertificate?: ClientCertificateConfig | undefined;
  mailbox: string;
  authorityUrl: string;
  graphUrl: string;
  saveToSentItems: boolean;
}

/** Pacing for one sender; every field already merged from its preset. */
export interface RateConfig {
  preset: PresetName | undefined;
  batchSize: number | undefined;
  intervalMs: number | undefined;
  dailyRecipients: number | undefined;
  dailyMessages: number | undefined;
  maxRecipientsPerMessage: number | undefined;
  maxMessageBytes: number | undefined;
  maxConcurrent: number | undefined;
  /** Rolling window of dailyRecipients / dailyMessages (24 h). */
  dailyWindowMs: number;
}

export interface SenderConfig {
  id: string;
  from: string;
  replyTo: string | undefined;
  transport: 'smtp' | 'graph';
  smtp: SmtpConfig | undefined;
  graph: GraphConfig | undefined;
  rate: RateConfig | undefined;
  /**
   * Whose limits the pacing counts against: the provider's limits are per mailbox, so senders that
   * sign in as the same mailbox (send-as addresses of one account, say) share one pace. The sender
   * id for a sender without a mailbox of its own; a token safe in NATS subjects and Redis keys.
   */
  pacingKey: string;
  /** Addresses besides `from` this sender accepts in MAIL FROM and the From header over SMTP (lowercased addr-specs). */
  smtpAliases?: string[];
  /**
   * The only recipient domains this sender takes (lowercased; `*.x` also takes x's subdomains):
   * `internal_domains`, or the domain of `from` for the microsoft365-hve preset. Absent: any.
   */
  internalDomains?: string[];
  /** People (lowercased addresses) who may manage this sender. */
  owners?: string[];
  /** relay.yaml `feedback:`: where the sender's mailbox is read. */
  feedback?: FeedbackConfig;
  /** `copy_to_sent: true`: the IMAP server each sent message is appended to (Sent folder, flagged \Seen). */
  sentCopy?: { imap: ImapConfig };
  managedBy?: ManagedBy;
  /** The settings as written (a relay.yaml entry without secrets), for the operations API. */
  spec?: Record<string, unknown>;
}

/** relay.yaml `console:`: the web console's OpenID Connect sign-in and its admins. */
export interface ConsoleConfig {
  issuer: string;
  clientId: string;
  clientSecret: Secret | undefined;
  /** client_secret_expires_at: when the client secret stops working, if configured. */
  clientSecretExpiresAt?: Date | undefined;
  /** Instead of clientSecret: private_key_jwt with this certificate. */
  clientCertificate?: ClientCertificateConfig | undefined;
  /** Lower-cased email addresses. */
  admins: string[];
  adminGroups: string[];
  contact: string | undefined;
  sessionTtlMs: number;
}

export interface RelayConfig {
  /** Absent: the console signs nobody in over OpenID Connect (a local demo sign-in may still be set up). */
  console?: ConsoleConfig;
  clients: ClientConfig[];
  senders: SenderConfig[];
  limits: {
    maxMessageBytes: number;
    /** Held mail waiting longer than this (from the later of submission, send_at, a retry's time) ends FAILED. */
    heldMaxAgeMs: number;
    /** Operator-set limits of the streams and buckets (limits.store in relay.yaml). */
    store: StoreLimitsConfig;
  };
  delivery: {
    retryInitialMs: number;
    retryMaxMs: number;
    maxAgeMs: number;
    /** How long a FAILED message's envelope is kept so RetryMessages can send it again. */
    failedRetentionMs: number;
    /** Webhook deliveries: first and longest wait between attempts, and how long an event is offered. */
    webhookRetryInitialMs: number;
    webhookRetryMaxMs: number;
    webhookMaxAgeMs: number;
  };
}

/** Limits of one stream or bucket; undefined = the relay's default, -1 = none. */
export interface StoreLimit {
  maxMessages?: number;
  maxBytes?: number;
}

export interface StoreLimitsConfig {
  submitted: StoreLimit;
  held: StoreLimit;
  dispatch: StoreLimit;
  status: StoreLimit;
  pacing: StoreLimit;
  bodies: StoreLimit;
  failed: StoreLimit;
  messages: StoreLimit;
  idempotency: StoreLimit;
}

/** A sender's mailbox over IMAP (relay.yaml `feedback.imap`). */
export interface ImapConfig {
  host: string;
  port: number;
  security: 'tls' | 'starttls';
  servername: string | undefined;
  /** PEM text of ca_file. */
  ca: string | undefined;
}

/** relay.yaml `senders[].feedback`: the mailbox folder delivery reports arrive in, and how it is read. */
export interface FeedbackConfig {
  imap: ImapConfig | undefined;
  /** Read the Graph sender's mailbox over Graph. */
  graph: boolean;
  folder: string;
  /** Reports recorded on their messages are moved here (made when missing), never deleted. */
  processedFolder: string;
  /** How often the folder is read. */
  intervalMs: number;
}
