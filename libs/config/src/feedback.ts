import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '@relay/core';
import { secretFields } from './issues.js';
import type { Secret } from './secret.js';
import type { FeedbackConfig, ImapConfig, SmtpConfig } from './types.js';

// A sender's mailbox as the relay reads and writes it after sending (relay.yaml `feedback:` and
// `copy_to_sent:`): over IMAP for SMTP senders, over Graph for Graph senders.

const nonEmpty = z.string().trim().min(1, 'must not be empty');
const secretRef = z.string().min(1, 'must not be empty').register(secretFields);
const folderName = z.string().trim().min(1, 'must not be empty').max(200, 'at most 200 characters');

export const imapSchema = z.strictObject({
  host: nonEmpty,
  port: z.number().int().min(1).max(65535).default(993),
  /** tls: implicit TLS (993); starttls: the upgrade on a plain connection (143). */
  security: z.enum(['tls', 'starttls'], { error: 'must be tls or starttls' }).default('tls'),
  servername: nonEmpty.optional(),
  ca_file: nonEmpty.optional(),
  /** Absent: the sender's SMTP credentials (its password, or its XOAUTH2 token). */
  auth: z.strictObject({ type: z.literal('password'), user: nonEmpty, password: secretRef }).optional(),
});

export const feedbackSchema = z
  .strictObject({
    imap: imapSchema.optional(),
    graph: z.literal(true, { error: 'must be true (read the mailbox over Graph), or leave graph out' }).optional(),
    folder: folderName.optional(),
    processed_folder: folderName.optional(),
  })
  .superRefine((v, ctx) => {
    if (v.imap && v.graph) ctx.addIssue({ code: 'custom', path: ['graph'], message: 'give imap or graph, not both' });
  });

export type RawFeedback = z.infer<typeof feedbackSchema>;
type RawImap = z.infer<typeof imapSchema>;

/** Where a provider's SMTP submission host keeps its IMAP mailboxes: the copy_to_sent default. */
export const KNOWN_IMAP_HOSTS: Readonly<Record<string, string>> = {
  'smtp.office365.com': 'outlook.office365.com',
  'smtp-legacy.office365.com': 'outlook.office365.com',
  'smtp.gmail.com': 'imap.gmail.com',
};

export function convertFeedback(f: RawFeedback, key: string, resolve: (ref: string, key: string) => Secret): FeedbackConfig {
  return {
    imap: f.imap ? convertImap(f.imap, `${key}.imap`, resolve) : undefined,
    graph: f.graph === true,
    folder: f.folder,
    processedFolder: f.processed_folder,
  };
}

function convertImap(i: RawImap, key: string, resolve: (ref: string, key: string) => Secret): ImapConfig {
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
    auth: i.auth ? { type: 'password', user: i.auth.user, password: resolve(i.auth.password, `${key}.auth.password`) } : undefined,
  };
}

/**
 * The IMAP server copy_to_sent appends to: `feedback.imap` when given, else the provider's own
 * for Microsoft 365 and Gmail submission hosts. The copy signs in with the sender's SMTP
 * credentials, so an `auth` of its own is refused (it would be a second secret to serve).
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
  if (feedback?.imap) {
    if (feedback.imap.auth) {
      throw new ConfigError(
        `${key}.feedback.imap.auth: not used with copy_to_sent, which signs in to IMAP with the sender's smtp.auth (leave auth out, or set copy_to_sent: false)`,
      );
    }
    return feedback.imap;
  }
  const host = KNOWN_IMAP_HOSTS[smtp.host.toLowerCase()];
  if (!host) {
    throw new ConfigError(
      `${key}.feedback.imap: required with copy_to_sent for SMTP host ${smtp.host} (the IMAP server is known only for smtp.office365.com and smtp.gmail.com); e.g. feedback: { imap: { host: imap.campus.example, port: 993, security: tls } }`,
    );
  }
  return { host, port: 993, security: 'tls', servername: undefined, ca: undefined, auth: undefined };
}
