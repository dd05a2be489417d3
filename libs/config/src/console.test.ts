import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { parseConfig } from './load.js';

const base = `
clients: [{ name: app, api_key: app-key-0123456789abcdef0123456789, senders: [s] }]
senders: [{ id: s, from: s@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }]
`;

function errorOf(text: string, env: Record<string, string> = {}): string {
  try {
    parseConfig(text, env);
  } catch (err) {
    if (isConfigError(err)) return err.message;
    throw err;
  }
  throw new Error('no error');
}

describe('console:', () => {
  it('reads the sign-in settings, the client secret from the environment and the admins lower-cased', () => {
    const cfg = parseConfig(
      `${base}console: { authority: "https://login.microsoftonline.com/t1/v2.0/", client_id: app-1, client_secret: "env:CONSOLE_SECRET", admins: [Jane@Campus.example], admin_groups: [g-1], contact: "it-help@campus.example" }\n`,
      { CONSOLE_SECRET: 'shh' },
    );
    expect(cfg.console).toMatchObject({
      issuer: 'https://login.microsoftonline.com/t1/v2.0',
      clientId: 'app-1',
      admins: ['jane@campus.example'],
      adminGroups: ['g-1'],
      contact: 'it-help@campus.example',
      sessionTtlMs: 8 * 3_600_000,
    });
    expect(cfg.console?.clientSecret?.reveal()).toBe('shh');
  });

  it('is optional', () => {
    expect(parseConfig(base, {}).console).toBeUndefined();
  });

  it('names what is wrong', () => {
    expect(errorOf(`${base}console: { client_id: a, admins: [a@campus.example] }\n`)).toMatch(/console\.issuer: required \(or authority\)/);
    expect(errorOf(`${base}console: { issuer: "https://idp.example", client_id: a }\n`)).toMatch(/console\.admins: name at least one admin/);
    expect(errorOf(`${base}console: { issuer: "ftp://idp.example", client_id: a, admins: [a@campus.example] }\n`)).toMatch(
      /console\.issuer: must be an http\(s\) URL/,
    );
    expect(errorOf(`${base}console: { issuer: "https://idp.example", client_id: a, admins: [a@b.c], colour: red }\n`)).toMatch(/console.*colour/);
    expect(errorOf(`${base}console: { issuer: "https://idp.example", client_id: a, client_secret: "env:NOPE", admins: [a@b.c] }\n`)).toMatch(
      /console\.client_secret.*NOPE/,
    );
  });
});
