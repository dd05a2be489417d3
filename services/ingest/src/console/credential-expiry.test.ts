import type { ConsoleConfig } from '@relay/config';
import { describe, expect, it } from 'vitest';
import { consoleCredentialEnd, createConsoleExpiryCheck } from './credential-expiry.js';

const DAY = 86_400_000;
const END = Date.parse('2027-06-30T00:00:00Z');
const withSecretEnd = { clientSecretExpiresAt: new Date(END) } as unknown as ConsoleConfig;

function capture() {
  const lines: Array<{ level: 'warn' | 'error'; msg: string; fields: Record<string, unknown> }> = [];
  return {
    lines,
    logger: {
      warn: (fields: object, msg: string) => lines.push({ level: 'warn', msg, fields: fields as Record<string, unknown> }),
      error: (fields: object, msg: string) => lines.push({ level: 'error', msg, fields: fields as Record<string, unknown> }),
    },
  };
}

describe("the console's sign-in credential", () => {
  it('is its certificate when it has one, else its configured client secret end, else unknown', () => {
    expect(consoleCredentialEnd(withSecretEnd)).toEqual({ kind: 'client_secret', expiresAt: new Date(END) });
    const notAfter = new Date(END + 5 * DAY);
    expect(consoleCredentialEnd({ clientCertificate: { notAfter } } as unknown as ConsoleConfig)).toEqual({ kind: 'certificate', expiresAt: notAfter });
    expect(consoleCredentialEnd({} as ConsoleConfig)).toBeUndefined();
    expect(consoleCredentialEnd(undefined)).toBeUndefined();
  });

  it('warns once at 30, 14 and 3 days before its end and errs once it has ended, as the clock moves', () => {
    let now = END - 40 * DAY;
    const { lines, logger } = capture();
    const check = createConsoleExpiryCheck({ config: () => withSecretEnd, logger, now: () => now });
    check.check();
    expect(lines).toEqual([]);
    for (const days of [29, 29, 13, 2, 2]) {
      now = END - days * DAY;
      check.check();
    }
    now = END + DAY;
    check.check();
    check.check();
    expect(lines.map((l) => `${l.level}: ${l.msg}`)).toEqual([
      "warn: the console's client secret expires within 30 days",
      "warn: the console's client secret expires within 14 days",
      "warn: the console's client secret expires within 3 days",
      "error: the console's client secret has expired: nobody can sign in to the console",
    ]);
    expect(lines[0]!.fields).toMatchObject({ kind: 'client_secret', expires_at: '2027-06-30T00:00:00.000Z', days_left: 30 });
    expect(lines[0]!.fields.remedy).toMatch(/Certificates & secrets.*console\.client_secret and console\.client_secret_expires_at/);
  });
});
