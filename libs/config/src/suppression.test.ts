import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { parseConfig, parseManagedClient } from './load.js';

const config = (client: string) => `
clients:
  - { name: j1, api_key: k1-0123456789abcdef0123456789abcdef, senders: [registrar]${client} }
senders:
  - { id: registrar, from: registrar@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }
`;

function configError(text: string): string {
  try {
    parseConfig(text, {});
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('client suppression configuration', () => {
  it('is off when absent; for defaults to 30d', () => {
    expect(parseConfig(config(''), {}).clients[0]!.suppression).toBeUndefined();
    expect(parseConfig(config(', suppression: { mode: refuse }'), {}).clients[0]!.suppression).toEqual({ mode: 'refuse', forMs: 30 * 86_400_000 });
    expect(parseConfig(config(', suppression: { mode: flag, for: 7d }'), {}).clients[0]!.suppression).toEqual({ mode: 'flag', forMs: 7 * 86_400_000 });
  });

  it('is read for a client managed through the API as well', () => {
    expect(parseManagedClient({ name: 'api', senders: [], suppression: { mode: 'flag', for: '14d' } }, [], undefined).suppression).toEqual({
      mode: 'flag',
      forMs: 14 * 86_400_000,
    });
    expect(() => parseManagedClient({ name: 'api', suppression: { mode: 'refuse', for: '0d' } }, [], undefined)).toThrow(
      'suppression.for: must be more than 0 and at most 90d',
    );
  });

  it('names the field that is wrong', () => {
    expect(configError(config(', suppression: { mode: block }'))).toContain('clients[0].suppression.mode: must be one of refuse, flag (got "block")');
    expect(configError(config(', suppression: { mode: refuse, for: 91d }'))).toContain('clients[0].suppression.for: must be more than 0 and at most 90d');
    expect(configError(config(', suppression: { mode: refuse, for: soon }'))).toContain('clients[0].suppression.for:');
  });
});
