import { SmtpReply } from './reply.js';

export interface SmtpAddress {
  /** The address as given ('' for the null sender `<>`). */
  address: string;
  /** ESMTP parameters, keys upper-cased; a parameter without a value maps to true. */
  args: Record<string, string | true>;
}

/** Longest path the relay takes (RFC 5321 4.5.3.1.3 says 256 octets; UTF-8 addresses count bytes). */
const MAX_PATH_BYTES = 256;

const LOCAL_ATOM = /^[^\s"(),:;<>@[\\\]]+$/u;
const LOCAL_QUOTED = /^"(?:[^"\\\p{Cc}]|\\[ -~])*"$/u;
const DOMAIN = /^(?:[^\s@<>[\]()\\,;:"\p{Cc}.]+\.)*[^\s@<>[\]()\\,;:"\p{Cc}.]+$/u;
const LITERAL = /^\[[\x21-\x5a\x5e-\x7e]+\]$/;
const NON_ASCII = /[^\p{ASCII}]/u;

/**
 * Parses the argument of MAIL (`FROM:<a> params`) or RCPT (`TO:<a> params`). Throws the SmtpReply
 * to answer with for bad syntax: 501 5.5.4 for the command, 501 5.1.7 / 5.1.3 for the address.
 */
export function parsePathCommand(arg: string, kind: 'FROM' | 'TO'): SmtpAddress {
  const usage = kind === 'FROM' ? 'MAIL FROM:<address> [parameters]' : 'RCPT TO:<address> [parameters]';
  const colon = arg.indexOf(':');
  if (colon === -1 || arg.slice(0, colon).trim().toUpperCase() !== kind) throw new SmtpReply(501, `5.5.4 Syntax: ${usage}`);
  const rest = arg.slice(colon + 1).trimStart();
  if (!rest.startsWith('<')) throw new SmtpReply(501, `5.5.4 Syntax: ${usage} (the address goes in angle brackets)`);
  const close = rest.indexOf('>');
  if (close === -1) throw new SmtpReply(501, `5.5.4 Syntax: ${usage} (no closing angle bracket)`);
  let address = rest.slice(1, close);
  // A source route (<@a,@b:user@host>) is accepted and ignored (RFC 5321 4.1.2, C).
  if (address.startsWith('@')) address = address.slice(address.indexOf(':') + 1);
  const args: Record<string, string | true> = {};
  for (const param of rest.slice(close + 1).split(' ')) {
    if (!param) continue;
    const eq = param.indexOf('=');
    const key = (eq === -1 ? param : param.slice(0, eq)).toUpperCase();
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key) || eq === 0) throw new SmtpReply(501, `5.5.4 Bad parameter syntax: ${param.slice(0, 64)}`);
    args[key] = eq === -1 ? true : param.slice(eq + 1);
  }
  const badAddress = kind === 'FROM' ? '5.1.7' : '5.1.3';
  if (address === '') {
    if (kind === 'TO') throw new SmtpReply(501, `${badAddress} A recipient address is required`);
    return { address, args };
  }
  if (Buffer.byteLength(address) > MAX_PATH_BYTES) throw new SmtpReply(501, `${badAddress} Address longer than ${MAX_PATH_BYTES} bytes`);
  if (!isMailbox(address)) throw new SmtpReply(501, `${badAddress} Bad address syntax: <${address.slice(0, 64)}>`);
  return { address, args };
}

/** local-part@domain: a dot-atom or quoted local part, a domain name or an address literal. */
export function isMailbox(address: string): boolean {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  const localOk = LOCAL_QUOTED.test(local) || (LOCAL_ATOM.test(local) && !local.startsWith('.') && !local.endsWith('.') && !local.includes('..'));
  return localOk && (DOMAIN.test(domain) || LITERAL.test(domain));
}

export function hasNonAscii(text: string): boolean {
  return NON_ASCII.test(text);
}

/** Decodes SASL base64, or undefined when `text` is not base64 (RFC 4648, padded). */
export function decodeBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}
