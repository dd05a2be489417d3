import type { SmtpAddress } from './parse.js';

export type { SmtpAddress } from './parse.js';

/** What the hooks see of a connection. */
export interface SmtpSession {
  /** Random id, for logs. */
  readonly id: string;
  readonly remoteAddress: string;
  /** TLS is on (implicit, or after STARTTLS). */
  readonly secure: boolean;
  /** The name the client gave in EHLO/HELO ('' before). */
  readonly hostNameAppearsAs: string;
  /** What onAuth returned for the logged-in client, if any. */
  readonly user: string | undefined;
  /** The protocol for the Received header: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA (RFC 3848), UTF8SMTP… (RFC 6531). */
  readonly transmissionType: string;
  /** The transaction in progress: its sender (false before MAIL) and accepted recipients. */
  readonly envelope: { readonly mailFrom: SmtpAddress | false; readonly rcptTo: readonly SmtpAddress[] };
}

export interface SmtpCredentials {
  method: 'PLAIN' | 'LOGIN';
  username: string;
  password: string;
}

/** The message of one transaction, as received with DATA or BDAT. */
export interface SmtpMessage {
  /** The message bytes in order (slices of what was read; empty once over the limit). */
  readonly chunks: readonly Buffer[];
  /** Bytes the client sent, counted even past the limit. */
  readonly size: number;
  /** The message grew past the transaction's limit: its bytes were dropped, refuse it (552 5.3.4). */
  readonly exceeded: boolean;
  readonly via: 'DATA' | 'BDAT';
}

/**
 * The application's side of the protocol. A hook refuses by throwing an SmtpReply (any other
 * error is answered 451 4.3.0); a 421 reply closes the connection. Hooks run one at a time per
 * connection, in command order: later pipelined commands wait.
 */
export interface SmtpHooks {
  onConnect?(session: SmtpSession): void | Promise<void>;
  /** TLS came up after STARTTLS (not called for implicit TLS: secure is set from the start). */
  onSecure?(session: SmtpSession): void;
  onClose?(session: SmtpSession): void;
  /** Checks a login; returns the identity that becomes session.user. */
  onAuth?(credentials: SmtpCredentials, session: SmtpSession): { user: string } | Promise<{ user: string }>;
  /** Accepts a sender; may lower the transaction's size limit below the advertised SIZE. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a hook that only checks the sender returns nothing.
  onMailFrom?(address: SmtpAddress, session: SmtpSession): void | { maxSize?: number } | Promise<void | { maxSize?: number }>;
  onRcptTo?(address: SmtpAddress, session: SmtpSession): void | Promise<void>;
  /** A transaction ended without a message (RSET, EHLO, STARTTLS, a new MAIL after a refusal, the connection closing). */
  onReset?(session: SmtpSession): void;
  /** Takes the message; resolves with the 250 reply text ("2.0.0 OK ..."). Called once per message, also when `exceeded`. */
  onMessage(message: SmtpMessage, session: SmtpSession): string | Promise<string>;
}

export interface SmtpProtocolOptions {
  /** Host name in the greeting and the EHLO reply. */
  name: string;
  /** Text after "ESMTP" in the greeting. */
  banner?: string;
  /** Implicit TLS (port 465): the TLS handshake comes first. */
  secure: boolean;
  /** Certificate and key: STARTTLS is offered with them (and required for `secure`). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest message, advertised as SIZE; a function is asked at each EHLO and MAIL (a limit that changes at runtime). */
  size: number | (() => number);
  /** Offer AUTH PLAIN LOGIN over TLS (never over plain text); needs hooks.onAuth. */
  auth: boolean;
  /** Longest command line with its parameters, CRLF excluded. */
  maxLineBytes?: number;
  /** Unrecognized or malformed commands a connection may send before it is closed. */
  maxBadCommands?: number;
  /** Recipients a transaction may have (a hook may allow fewer). */
  maxRecipients?: number;
  /** A connection with no traffic this long is closed with 421 4.4.2. */
  idleTimeoutMs?: number;
  /** How long close() lets a message being received or stored finish. */
  closeGraceMs?: number;
  /** How long a client has to finish the TLS handshake after STARTTLS. */
  handshakeTimeoutMs?: number;
  /** Connections open at once on this port; past it a new one is closed at once. */
  maxConnections?: number;
  /** Connections open at once from one address; past it a new one gets 421 4.7.0 and is closed. */
  maxConnectionsPerAddress?: number;
  /** Errors of the listening socket after it started (accept failures); they do not stop it. */
  onError?(err: Error): void;
}

/** Longest command line (RFC 5321 allows 512; ESMTP parameters add to it). */
export const DEFAULT_MAX_LINE_BYTES = 4096;
export const DEFAULT_MAX_BAD_COMMANDS = 10;
export const DEFAULT_MAX_RECIPIENTS = 1000;
export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_CLOSE_GRACE_MS = 30_000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_CONNECTIONS = 1000;
/** As Postfix's smtpd_client_connection_count_limit. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 50;
