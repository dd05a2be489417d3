import { isIP } from 'node:net';
import { z } from 'zod';
import { duration } from './duration-field.js';
import { feedbackSchema } from './feedback.js';
import { secretFields } from './issues.js';
import { PRESET_NAMES } from './presets.js';

// The raw shape of relay.yaml (snake_case, as operators write it). Every object is strict so an
// unknown key stops the service with its name.

const secretRef = z.string().min(1, 'must not be empty').register(secretFields);
const nonEmpty = z.string().trim().min(1, 'must not be empty');
const ADDRESS = /^[^\s@<>",;]+@[^\s@<>",;]+$/;
const mailbox = z
  .string()
  .trim()
  .refine(
    (v) => ADDRESS.test(v.replace(/^.*<([^>]+)>\s*$/, '$1')),
    'must be an email address, e.g. no-reply@campus.example or "Name <no-reply@campus.example>"',
  );
const httpsUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });
const positiveInt = z.number().int().positive();
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;
/** A client secret's end date as Entra ID shows it: an ISO 8601 date (00:00 UTC that day) or date-time with its zone. */
const expiryDate = z
  .string()
  .trim()
  .refine((v) => ISO_DATE.test(v) && !Number.isNaN(new Date(v).getTime()), 'must be an ISO 8601 date or date-time, e.g. 2027-06-30 or 2027-06-30T12:00:00Z');

export const senderId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, "-" or "_"');

const clientLimitsSchema = z.strictObject({
  messages_per_second: z.number().positive().optional(),
  bytes_per_second: positiveInt.optional(),
  max_stored_messages: positiveInt.optional(),
  max_stored_bytes: positiveInt.optional(),
  daily_recipients: positiveInt.optional(),
});
/** An IPv4/IPv6 address with an optional prefix length; a bare address means that one host. */
const cidr = z
  .string()
  .trim()
  .refine((v) => {
    const [ip, bits, extra] = v.split('/');
    const family = isIP(ip ?? '');
    if (!family || extra !== undefined) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return /^\d{1,3}$/.test(bits) && n <= (family === 4 ? 32 : 128);
  }, 'must be an IP address or CIDR range, e.g. 10.20.0.0/16 or 192.0.2.7');

/** Who may submit over the SMTP door as this client: AUTH credentials and/or source addresses. */
const clientSmtpSchema = z
  .strictObject({
    username: nonEmpty.optional(),
    password: secretRef.optional(),
    allow_ips: z.array(cidr).min(1, 'must list at least one address or range').optional(),
  })
  .superRefine((v, ctx) => {
    if (v.username !== undefined && v.password === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: 'required with username' });
    if (v.password !== undefined && v.username === undefined) ctx.addIssue({ code: 'custom', path: ['username'], message: 'required with password' });
    if (v.username === undefined && v.password === undefined && v.allow_ips === undefined) {
      ctx.addIssue({ code: 'custom', message: 'needs username and password, or allow_ips, or both' });
    }
  });

/** Webhook endpoints one client may have: each is a consumer and a delivery log on the broker. */
export const MAX_WEBHOOKS_PER_CLIENT = 10;

/** The state changes a webhook may ask for (`events: [sent, failed, ...]`); `message.<name>` on the wire. */
export const WEBHOOK_EVENTS = ['queued', 'sending', 'sent', 'retrying', 'failed', 'bounced'] as const;

/**
 * HTTPS, or plain HTTP to a loopback address (a receiver on the same host, for development and
 * tests); no credentials in the URL (the secret signs every delivery instead).
 */
const webhookUrl = z
  .string()
  .trim()
  .max(2_048, 'at most 2048 characters')
  .superRefine((v, ctx) => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be an https:// URL' });
      return;
    }
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const loopback = host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) {
      ctx.addIssue({ code: 'custom', message: 'must be an https:// URL (http:// only to a loopback address such as 127.0.0.1)' });
    }
    if (u.username || u.password) ctx.addIssue({ code: 'custom', message: 'must not carry a user name or password (deliveries are signed with secret)' });
  });

const webhookSchema = z.strictObject({
  url: webhookUrl,
  /** A Standard Webhooks secret, `whsec_<base64>`, or env:NAME / file:PATH holding one. */
  secret: secretRef,
  /** While receivers move to a new secret: deliveries are signed with both (two signatures). */
  previous_secret: secretRef.optional(),
  events: z
    .array(z.enum(WEBHOOK_EVENTS, { error: `must be one of ${WEBHOOK_EVENTS.join(', ')}` }))
    .min(1, `must list at least one of ${WEBHOOK_EVENTS.join(', ')}`),
});

/** Recipients that hard-bounced recently (the `<prefix>-suppressed` bucket): refused or flagged at SendMail. */
const clientSuppressionSchema = z.strictObject({
  mode: z.enum(['refuse', 'flag'], { error: 'must be refuse or flag' }),
  for: duration.refine((ms) => ms > 0 && ms <= 90 * 86_400_000, 'must be more than 0 and at most 90d').default(30 * 86_400_000),
});

export const clientSchema = z.strictObject({
  name: nonEmpty,
  api_key: secretRef,
  senders: z.array(senderId).default([]),
  admin: z.boolean().default(false),
  limits: clientLimitsSchema.optional(),
  smtp: clientSmtpSchema.optional(),
  webhooks: z.array(webhookSchema).max(MAX_WEBHOOKS_PER_CLIENT, `at most ${MAX_WEBHOOKS_PER_CLIENT} webhooks per client`).optional(),
  suppression: clientSuppressionSchema.optional(),
});

const passwordAuth = z.strictObject({
  type: z.literal('password'),
  user: nonEmpty,
  password: secretRef,
});

/**
 * An Entra ID application's certificate credential, instead of a client secret: the certificate
 * (a PEM file, or the PEM itself for senders managed through the API) and its private key (a PEM
 * file, or a secret reference; set with SetSenderSecret for senders managed through the API).
 */
const clientCertificateSchema = z
  .strictObject({
    certificate_file: nonEmpty.optional(),
    certificate_pem: z
      .string()
      .max(64 * 1024, 'at most 64 KiB')
      .refine((v) => v.includes('-----BEGIN CERTIFICATE-----'), 'must be a PEM certificate (-----BEGIN CERTIFICATE-----)')
      .optional(),
    private_key_file: nonEmpty.optional(),
    private_key: secretRef.optional(),
  })
  .superRefine((v, ctx) => {
    if ((v.certificate_file === undefined) === (v.certificate_pem === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['certificate_file'], message: 'give certificate_file or certificate_pem (one of them)' });
    }
    if ((v.private_key_file === undefined) === (v.private_key === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['private_key_file'], message: 'give private_key_file or private_key (one of them)' });
    }
  });

/**
 * A Google service account's key, for domain-wide delegation (flow: service_account): its address
 * and its private key (a secret reference; SetSenderSecret for senders managed through the API).
 */
const serviceAccountSchema = z.strictObject({
  client_email: nonEmpty.refine((v) => ADDRESS.test(v), "must be the service account's address, e.g. relay-mailer@project.iam.gserviceaccount.com"),
  private_key: secretRef,
});

const oauth2Auth = z.strictObject({
  type: z.literal('oauth2'),
  provider: z.enum(['microsoft', 'google']),
  flow: z.enum(['client_credentials', 'refresh_token', 'service_account']).default('refresh_token'),
  tenant_id: nonEmpty.optional(),
  // Required except with flow: service_account (checked when the config is converted).
  client_id: nonEmpty.optional(),
  client_secret: secretRef.optional(),
  /** When the client secret stops working (Entra ID → Certificates & secrets → Expires). */
  client_secret_expires_at: expiryDate.optional(),
  client_certificate: clientCertificateSchema.optional(),
  user: nonEmpty,
  refresh_token: secretRef.optional(),
  service_account: serviceAccountSchema.optional(),
  /** The service account's JSON key file as Google Cloud hands it out (a secret: it holds the private key). */
  service_account_file: nonEmpty.optional(),
  authority_url: httpsUrl.optional(),
  token_url: httpsUrl.optional(),
});

const noAuth = z.strictObject({ type: z.literal('none') });

/**
 * A sender's SMTP connections when `pool` is not set. A connection carries up to a thousand messages
 * before it is replaced (nodemailer's own default, 100, makes a new TLS handshake and AUTH every
 * hundred messages); a server that closes it sooner only makes the pool open the next one.
 */
export const SMTP_POOL_DEFAULTS = { maxConnections: 5, maxMessages: 1_000 } as const;

const smtpSchema = z.strictObject({
  host: nonEmpty,
  port: z.number().int().min(1).max(65535),
  security: z.enum(['tls', 'starttls', 'none']),
  servername: nonEmpty.optional(),
  ca_file: nonEmpty.optional(),
  /** The CA's PEM itself (senders managed through the API, which may not name files). */
  ca_pem: z
    .string()
    .max(64 * 1024, 'at most 64 KiB')
    .refine((v) => v.includes('-----BEGIN CERTIFICATE-----'), 'must be a PEM certificate (-----BEGIN CERTIFICATE-----)')
    .optional(),
  auth: z.discriminatedUnion('type', [passwordAuth, oauth2Auth, noAuth]).optional(),
  pool: z
    .strictObject({
      max_connections: positiveInt.max(100).default(SMTP_POOL_DEFAULTS.maxConnections),
      max_messages: positiveInt.default(SMTP_POOL_DEFAULTS.maxMessages),
    })
    .optional(),
  timeouts: z.strictObject({ connect: duration.optional(), greeting: duration.optional(), socket: duration.optional() }).optional(),
});

const graphSchema = z.strictObject({
  /** client_credentials: app-only Mail.Send; refresh_token: delegated Mail.Send, signed in by the mailbox (BeginConsent). */
  flow: z.enum(['client_credentials', 'refresh_token']).default('client_credentials'),
  tenant_id: nonEmpty,
  client_id: nonEmpty,
  client_secret: secretRef.optional(),
  client_secret_expires_at: expiryDate.optional(),
  client_certificate: clientCertificateSchema.optional(),
  mailbox: mailbox,
  authority_url: httpsUrl.default('https://login.microsoftonline.com'),
  graph_url: httpsUrl.default('https://graph.microsoft.com'),
  save_to_sent_items: z.boolean().default(true),
});

const rateSchema = z.strictObject({
  preset: z.enum(PRESET_NAMES).optional(),
  batch_size: positiveInt.optional(),
  interval: duration.optional(),
  daily_recipients: positiveInt.optional(),
  daily_messages: positiveInt.optional(),
  max_recipients_per_message: positiveInt.optional(),
  max_message_bytes: positiveInt.optional(),
  max_concurrent: positiveInt.optional(),
  /** The rolling window of the daily caps; 24h unless shortened (for tests and trials). */
  daily_window: duration.refine((ms) => ms > 0 && ms <= 86_400_000, 'must be more than 0 and at most 24h').optional(),
});

// A stream's or bucket's limits; -1 (or leaving it out) means no limit of that kind.
const limitValue = z
  .number()
  .int()
  .refine((n) => n === -1 || n > 0, 'must be a positive whole number, or -1 for no limit');
const storeLimit = z.strictObject({ max_messages: limitValue.optional(), max_bytes: limitValue.optional() }).prefault({});

export const senderSchema = z.strictObject({
  id: senderId,
  from: mailbox,
  reply_to: mailbox.optional(),
  transport: z.enum(['smtp', 'graph']),
  smtp: smtpSchema.optional(),
  graph: graphSchema.optional(),
  rate: rateSchema.optional(),
  /** More addresses a client may put in MAIL FROM and the From header when it submits over SMTP as this sender. */
  smtp_aliases: z.array(mailbox).optional(),
  /**
   * The domains this sender's recipients must be in (`*.campus.example` takes its subdomains too).
   * Mail to any other domain is refused when it is submitted. Senders with the microsoft365-hve
   * preset default to the domain of `from`: High Volume Email delivers inside the tenant only.
   */
  internal_domains: z
    .array(
      z
        .string()
        .trim()
        .toLowerCase()
        .regex(/^(\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/, 'must be a domain name, e.g. campus.example or *.campus.example'),
    )
    .min(1, 'must list at least one domain')
    .max(100, 'at most 100 domains')
    .optional(),
  /** People (by email) who may manage this sender and see its mail. */
  owners: z.array(mailbox).max(100, 'at most 100 owners').optional(),
  feedback: feedbackSchema.optional(),
  /** SMTP senders: append each sent message to the mailbox's Sent folder over IMAP (feedback.imap). */
  copy_to_sent: z.boolean().optional(),
});

/**
 * A client managed through the API: as in relay.yaml, but its keys are made by the relay
 * (CreateApiKey) and the SMTP door admits it by address only.
 */
/** A webhook of a client managed through the API: its signing secret is made by the relay (CreateWebhookSecret). */
const managedWebhookSchema = webhookSchema.omit({ secret: true, previous_secret: true });

export const managedClientSchema = clientSchema.omit({ api_key: true, smtp: true, webhooks: true }).extend({
  webhooks: z.array(managedWebhookSchema).max(MAX_WEBHOOKS_PER_CLIENT, `at most ${MAX_WEBHOOKS_PER_CLIENT} webhooks per client`).optional(),
  smtp: z
    .strictObject({
      // The password is made by the relay (CreateSmtpPassword), never written here.
      username: nonEmpty.optional(),
      allow_ips: z.array(cidr).min(1, 'must list at least one address or range').optional(),
    })
    .refine((v) => v.username !== undefined || v.allow_ips !== undefined, 'needs username, or allow_ips, or both')
    .optional(),
});

/**
 * The web console's sign-in (OpenID Connect, authorization code + PKCE): the identity provider's
 * issuer (`authority` is the same thing under Entra ID's name), the app's client id and secret,
 * and who is an admin (by email or by a group id in the `groups` claim).
 */
export const consoleSchema = z
  .strictObject({
    issuer: httpsUrl.optional(),
    authority: httpsUrl.optional(),
    client_id: nonEmpty,
    client_secret: secretRef.optional(),
    client_secret_expires_at: expiryDate.optional(),
    client_certificate: clientCertificateSchema.optional(),
    admins: z.array(mailbox).max(1_000, 'at most 1000 admins').default([]),
    admin_groups: z.array(nonEmpty).max(100, 'at most 100 groups').default([]),
    /** Whom people without a role should ask, shown on the console's "no access" page. */
    contact: z.string().trim().min(1, 'must not be empty').max(200, 'at most 200 characters').optional(),
    session_ttl: duration.refine((ms) => ms >= 60_000 && ms <= 7 * 86_400_000, 'must be between 1m and 7d').default(8 * 3_600_000),
  })
  .superRefine((v, ctx) => {
    if (v.issuer === undefined && v.authority === undefined) {
      ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'required (or authority), e.g. https://login.microsoftonline.com/<tenant id>/v2.0' });
    }
    if (v.issuer !== undefined && v.authority !== undefined && v.issuer !== v.authority) {
      ctx.addIssue({ code: 'custom', path: ['authority'], message: 'give issuer or authority, not two different values' });
    }
    if (v.client_secret !== undefined && v.client_certificate !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['client_certificate'], message: 'give client_secret or client_certificate, not both' });
    }
    if (v.client_secret_expires_at !== undefined && v.client_secret === undefined) {
      ctx.addIssue({ code: 'custom', path: ['client_secret_expires_at'], message: 'is the expiry of client_secret, which is not set' });
    }
    if (v.admins.length === 0 && v.admin_groups.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['admins'], message: 'name at least one admin (admins: [email]) or admin group (admin_groups: [group id])' });
    }
  });

export const configSchema = z.strictObject({
  console: consoleSchema.optional(),
  clients: z.array(clientSchema).min(1, 'at least one client is required'),
  senders: z.array(senderSchema).min(1, 'at least one sender is required'),
  limits: z
    .strictObject({
      max_message_bytes: positiveInt.default(35 * 1024 * 1024),
      held_max_age: duration.refine((ms) => ms > 0, 'must be more than 0').default(72 * 3_600_000),
      store: z
        .strictObject({
          submitted: storeLimit,
          held: storeLimit,
          dispatch: storeLimit,
          status: storeLimit,
          pacing: storeLimit,
          bodies: storeLimit,
          failed: storeLimit,
          messages: storeLimit,
          idempotency: storeLimit,
        })
        .prefault({}),
    })
    .prefault({}),
  delivery: z
    .strictObject({
      retry_initial: duration.default(30_000),
      retry_max: duration.default(3_600_000),
      max_age: duration.default(86_400_000),
      failed_retention: duration.refine((ms) => ms > 0, 'must be more than 0').default(7 * 86_400_000),
      /** Webhook deliveries: the first retry's wait, the longest wait, and how long an event is offered. */
      webhook_retry_initial: duration.refine((ms) => ms > 0, 'must be more than 0').default(5_000),
      webhook_retry_max: duration.refine((ms) => ms > 0, 'must be more than 0').default(600_000),
      webhook_max_age: duration.refine((ms) => ms >= 60_000, 'must be at least 1m').default(3 * 86_400_000),
    })
    .prefault({}),
});

export type RawClientLimits = z.infer<typeof clientLimitsSchema>;
export type RawConfig = z.infer<typeof configSchema>;
export type RawConsole = z.infer<typeof consoleSchema>;
export type RawSender = z.infer<typeof senderSchema>;
export type RawClient = z.infer<typeof clientSchema>;
export type RawManagedClient = z.infer<typeof managedClientSchema>;
