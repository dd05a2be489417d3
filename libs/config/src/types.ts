import type { PresetName } from './presets.js';
import type { Secret } from './secret.js';

export interface ClientConfig {
  name: string;
  apiKey: Secret;
  senders: string[];
  admin: boolean;
  /** Submission over the SMTP door; absent: this client cannot use it. */
  smtp?: ClientSmtpConfig;
}

export interface ClientSmtpConfig {
  /** AUTH PLAIN/LOGIN credentials (both or neither). */
  username: string | undefined;
  password: Secret | undefined;
  /** Source addresses/ranges that may submit without AUTH (printers, scanners). */
  allowIps: string[];
}

export type SmtpAuthConfig =
  | { type: 'none' }
  | { type: 'password'; user: string; password: Secret }
  | {
      type: 'oauth2';
      provider: 'microsoft' | 'google';
      flow: 'client_credentials' | 'refresh_token';
      tenantId: string | undefined;
      clientId: string;
      clientSecret: Secret | undefined;
      user: string;
      refreshToken: Secret | undefined;
      authorityUrl: string | undefined;
      tokenUrl: string | undefined;
    };

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

export interface GraphConfig {
  tenantId: string;
  clientId: string;
  clientSecret: Secret;
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
}

export interface RelayConfig {
  clients: ClientConfig[];
  senders: SenderConfig[];
  limits: { maxMessageBytes: number };
  delivery: { retryInitialMs: number; retryMaxMs: number; maxAgeMs: number };
}
