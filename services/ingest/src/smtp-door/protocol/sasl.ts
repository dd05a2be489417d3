import { decodeBase64 } from './parse.js';
import type { SmtpCredentials } from './types.js';

/** What to do next in an AUTH exchange (RFC 4954): ask, refuse, or check the credentials. */
export type SaslStep =
  | { kind: 'challenge'; text: string; next: (line: string) => SaslStep }
  | { kind: 'refuse'; code: number; text: string }
  | { kind: 'credentials'; credentials: SmtpCredentials };

const refuse = (code: number, text: string): SaslStep => ({ kind: 'refuse', code, text });

/** Decodes one client response: `*` cancels, `=` is empty, anything else must be base64. */
function response(text: string, then: (value: string) => SaslStep): SaslStep {
  if (text === '*') return refuse(501, '5.7.0 Authentication cancelled');
  const value = text === '=' ? Buffer.alloc(0) : decodeBase64(text);
  if (!value) return refuse(501, '5.5.2 Invalid base64 in the AUTH response');
  return then(value.toString('utf8'));
}

const plain = (text: string) =>
  response(text, (value) => {
    const parts = value.split('\0');
    if (parts.length !== 3) return refuse(501, '5.5.2 PLAIN takes authzid NUL username NUL password');
    return { kind: 'credentials', credentials: { method: 'PLAIN', username: parts[1]!, password: parts[2]! } };
  });

const login = (text: string) =>
  response(text, (username) => ({
    kind: 'challenge',
    text: 'UGFzc3dvcmQ6',
    next: (line) => response(line, (password) => ({ kind: 'credentials', credentials: { method: 'LOGIN', username, password } })),
  }));

/** The first step of `AUTH <mechanism> [initial-response]`: PLAIN or LOGIN. */
export function startSasl(mechanism: string, initial: string | undefined): SaslStep {
  switch (mechanism.toUpperCase()) {
    case 'PLAIN':
      return initial !== undefined ? plain(initial) : { kind: 'challenge', text: '', next: plain };
    case 'LOGIN':
      return initial !== undefined ? login(initial) : { kind: 'challenge', text: 'VXNlcm5hbWU6', next: login };
    default:
      return refuse(504, '5.5.4 Unrecognized authentication type (PLAIN or LOGIN)');
  }
}
