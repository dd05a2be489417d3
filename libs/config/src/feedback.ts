import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '@relay/core';
import { duration } from './duration-field.js';
import type { FeedbackConfig, ImapConfig, SmtpConfig } from './types.js';

// A sender's mailbox as the relay reads and writes it after sending (relay.yaml `feedback:` and
// `copy_to_sent:`): over IMAP for SMTP senders, over Graph for Graph senders.

const nonEmpty = z.string().trim().min(1, 'must not be empty');
const folderName = z.string().trim().min(1, 'must not be empty').max(200, 'at most 200 characters');

export const imapSchema = z.strictObject({
  host: nonEmpty,
  port: z.number().int().min(1).max(65535).default(993),
  /** tls: implicit TLS (993); starttls: the upgrade on a plain connection (143). Never plain text: it carries the sender's credentials. */
  security: z.enum(['tls', 'starttls'], { error: 'must be tls or starttls' }).default('tls'),
  servername: nonEmpty.optional(),
  ca_file: nonEmpty.optional(),
  /** Refused with a clear message (see convertFeedback): the sender's smtp.auth signs in. */
  auth: z.unknown().optional(),
});

export const feedbackSchema = z
  .strictObject({
    imap: imapSchema.optional(),
    graph: z.literal(true, { error: 'must be true (read the mailbox over Graph), or leave graph out' }).optional(),
    folder: folderName.default('INBOX'),
    processed_folder: folderName.default('Delivery reports'),
    /** How often the folder is read for delivery reports. */
    interval: duration.optional(),
  })
  .superRefine((v, ctx) => {
    if (v.imap && v.graph) ctx.addIssue({ code: 'custom', path: ['graph'], message: 'give imap or graph, not both' });
    else if (!v.imap && !v.graph) ctx.addIssue({ code: 'custom', message: 'needs imap: { host, port, security } or graph: true, one of them' });
  });

export type RawFeedback = z.infer<typeof feedbackSchema>;
type RawImap = z.infer<typeof imapSchema>;

/** Where a provider's SMTP submission host keeps its IMAP mailboxes: the copy_to_sent default. */
export const KNOWN_IMAP_HOSTS: Readonly<Record<string, string>> = {
  'smtp.office365.com': 'outlook.office365.com',
  'smtp-legacy.office365.com': 'outlook.office365.com',
  'smtp.gmail.com': 'imap.gmail.com',
};

/** How often a sender's mailbox is read for delivery reports when `feedback.interval` is not set. */
export const FEEDBACK_INTERVAL_MS = 60_000;

/** What of the sender convertFeedback checks the mailbox settings against. */
export interface FeedbackContext {
  transport: 'smtp' | 'graph';
  smtpAuth: { type: string; provider?: string; flow?: string } | undefined;
}

/**
 * `feedback:` of a sender: its mailbox over IMAP (SMTP senders, signing in with the sender's own
 * smtp.auth: the same password or XOAUTH2 token) or over Graph (Graph senders). `key` names the
 * sender (`senders[0]`).
 */
export function convertFeedback(f: RawFeedback, s: FeedbackContext, key: string): FeedbackConfig {
  if (f.imap && s.transport !== 'smtp')
    throw new ConfigError(`${key}.feedback.imap: reads with the sender's SMTP credentials; for transport: graph use graph: true`);
  if (f.imap && (!s.smtpAuth || s.smtpAuth.type === 'none'))
    throw new ConfigError(`${key}.feedback.imap: needs the sender's smtp.auth (password or oauth2) to sign in`);
  if (f.imap?.auth !== undefined) {
    throw new ConfigError(`${key}.feedback.imap.auth: not needed: IMAP signs in with the sender's smtp.auth (the same password or OAuth2 token)`);
  }
  if (f.graph && s.transport !== 'graph') throw new ConfigError(`${key}.feedback.graph: only for transport: graph`);
  if (f.folder === f.processed_folder) throw new ConfigError(`${key}.feedback.processed_folder: must differ from folder`);
  return {
    imap: f.imap ? convertImap(f.imap, `${key}.feedback.imap`) : undefined,
    graph: f.graph === true,
    folder: f.folder,
    processedFolder: f.processed_folder,
    intervalMs: f.interval ?? FEEDBACK_INTERVAL_MS,
  };
}

function convertImap(i: RawImap, key: string): ImapConfig {
  let ca: string | undefined;
  if (i.ca_file) {
    try {
      ca = readFileSync(i.ca_file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${key}.ca_file: cannot read ${i.ca_file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`${key}.ca_file: ${i.ca_file} holds no PEM certificate`);
  }
  return {
    host: i.host,
    port: i.port,
    security: i.security,
    servername: i.servername,
    ca,
  };
}

/**
 * The IMAP server copy_to_sent appends to: `feedback.imap` when given, else the provider's own
 * for Microsoft 365 and Gmail submission hosts. The copy signs in with the sender's SMTP
 * credentials.
 */
export function sentCopyImap(
  copyToSent: boolean | undefined,
  transport: 'smtp' | 'graph',
  smtp: SmtpConfig | undefined,
  feedback: FeedbackConfig | undefined,
  key: string,
): ImapConfig | undefined {
  if (!copyToSent) return undefined;
  if (transport === 'graph') {
    throw new ConfigError(`${key}.copy_to_sent: not for transport: graph (Graph saves the message in Sent Items itself; set graph.save_to_sent_items)`);
  }
  if (!smtp || smtp.auth.type === 'none') throw new ConfigError(`${key}.copy_to_sent: needs smtp.auth (IMAP signs in with the sender's SMTP credentials)`);
  if (feedback?.imap) return feedback.imap;
  const host = KNOWN_IMAP_HOSTS[smtp.host.toLowerCase()];
  if (!host) {
    throw new ConfigError(
      `${key}.feedback.imap: required with copy_to_sent for SMTP host ${smtp.host} (the IMAP server is known only for smtp.office365.com and smtp.gmail.com); e.g. feedback: { imap: { host: imap.campus.example, port: 993, security: tls } }`,
    );
  }
  return { host, port: 993, security: 'tls', servername: undefined, ca: undefined };
}
