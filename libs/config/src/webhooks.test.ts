import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { parseConfig, parseManagedClient } from './load.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const env = { BILLING_API_KEY: 'billing-key-0123456789abcdef0123456789', HOOK_SECRET: SECRET };

function withWebhooks(webhooks: string): string {
  return `
clients:
  - name: billing-app
    api_key: env:BILLING_API_KEY
    senders: [no-reply]
    webhooks:
${webhooks}
senders:
  - id: no-reply
    from: no-reply@campus.example
    transport: smtp
    smtp: { host: smtp.campus.example, port: 587, security: starttls }
`;
}

function configError(text: string, e: Record<string, string> = env): string {
  try {
    parseConfig(text, e);
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('client webhooks', () => {
  it('reads url, secret and events, and keeps the secret out of the shown settings', () => {
    const cfg = parseConfig(
      withWebhooks('      - { url: https://sis.campus.example/hooks/relay, secret: env:HOOK_SECRET, events: [sent, failed, bounced] }'),
      env,
    );
    const [hook] = cfg.clients[0]!.webhooks!;
    expect(hook!.url).toBe('https://sis.campus.example/hooks/relay');
    expect(hook!.events).toEqual(['sent', 'failed', 'bounced']);
    expect(hook!.secret!.reveal()).toBe(SECRET);
    expect(cfg.clients[0]!.spec).toEqual({
      name: 'billing-app',
      senders: ['no-reply'],
      webhooks: [{ url: 'https://sis.campus.example/hooks/relay', events: ['sent', 'failed', 'bounced'] }],
    });
    expect(JSON.stringify(cfg) + inspect(cfg, { depth: 10 })).not.toContain(SECRET.slice(6, 30));
    expect(cfg.delivery).toMatchObject({ webhookRetryInitialMs: 5_000, webhookRetryMaxMs: 600_000, webhookMaxAgeMs: 3 * 86_400_000 });
  });

  it('takes plain http only to a loopback address', () => {
    const ok = parseConfig(withWebhooks('      - { url: "http://127.0.0.1:8099/h", secret: env:HOOK_SECRET, events: [sent] }'), env);
    expect(ok.clients[0]!.webhooks![0]!.url).toBe('http://127.0.0.1:8099/h');
    expect(configError(withWebhooks('      - { url: "http://sis.campus.example/h", secret: env:HOOK_SECRET, events: [sent] }'))).toContain(
      'clients[0].webhooks[0].url: must be an https:// URL (http:// only to a loopback address',
    );
    expect(configError(withWebhooks('      - { url: "ftp://x.example/", secret: env:HOOK_SECRET, events: [sent] }'))).toContain('clients[0].webhooks[0].url');
    expect(configError(withWebhooks('      - { url: "https://u:p@x.example/", secret: env:HOOK_SECRET, events: [sent] }'))).toContain(
      'clients[0].webhooks[0].url: must not carry a user name or password',
    );
  });

  it('names a bad event, an empty list, a missing secret and a duplicate URL', () => {
    expect(configError(withWebhooks('      - { url: https://x.example/h, secret: env:HOOK_SECRET, events: [delivered] }'))).toContain(
      'clients[0].webhooks[0].events[0]: must be one of queued, sending, sent, retrying, failed, bounced',
    );
    expect(configError(withWebhooks('      - { url: https://x.example/h, secret: env:HOOK_SECRET, events: [] }'))).toContain(
      'clients[0].webhooks[0].events: must list at least one of',
    );
    expect(configError(withWebhooks('      - { url: https://x.example/h, events: [sent] }'))).toContain('clients[0].webhooks[0].secret: required');
    expect(
      configError(
        withWebhooks(
          '      - { url: https://x.example/h, secret: env:HOOK_SECRET, events: [sent] }\n      - { url: https://x.example/h, secret: env:HOOK_SECRET, events: [failed] }',
        ),
      ),
    ).toContain('clients[0].webhooks[1].url: the same URL as an earlier webhook');
  });

  it('refuses a secret that is not whsec_ and enough base64, without showing it', () => {
    const msg = configError(withWebhooks('      - { url: https://x.example/h, secret: env:HOOK_SECRET, events: [sent] }'), {
      ...env,
      HOOK_SECRET: 'hunter2-hunter2',
    });
    expect(msg).toContain('clients[0].webhooks[0].secret: must be a Standard Webhooks secret, whsec_');
    expect(msg).not.toContain('hunter2');
    const short = `whsec_${randomBytes(8).toString('base64')}`;
    expect(configError(withWebhooks(`      - { url: https://x.example/h, secret: "${short}", events: [sent] }`))).toContain('24-64 random bytes');
    expect(configError(withWebhooks('      - { url: https://x.example/h, secret: env:NOPE, events: [sent] }'))).toContain(
      'clients[0].webhooks[0].secret: environment variable NOPE is not set',
    );
  });

  it('takes a previous secret while receivers move to a new one, checked and left out of the settings the same way', () => {
    const previous = `whsec_${randomBytes(24).toString('base64')}`;
    const cfg = parseConfig(withWebhooks('      - { url: https://x.example/h, secret: env:HOOK_SECRET, previous_secret: env:OLD_SECRET, events: [sent] }'), {
      ...env,
      OLD_SECRET: previous,
    });
    expect(cfg.clients[0]!.webhooks![0]!.previousSecret!.reveal()).toBe(previous);
    expect(cfg.clients[0]!.spec).toMatchObject({ webhooks: [{ url: 'https://x.example/h', events: ['sent'] }] });
    expect(JSON.stringify(cfg.clients[0]!.spec)).not.toContain('OLD_SECRET');
    expect(configError(withWebhooks('      - { url: https://x.example/h, secret: env:HOOK_SECRET, previous_secret: "whsec_abc", events: [sent] }'))).toContain(
      'clients[0].webhooks[0].previous_secret: must be a Standard Webhooks secret',
    );
  });

  it('bounds the webhooks of one client', () => {
    const many = Array.from({ length: 11 }, (_, i) => `      - { url: "https://x.example/${i}", secret: env:HOOK_SECRET, events: [sent] }`).join('\n');
    expect(configError(withWebhooks(many))).toContain('clients[0].webhooks: at most 10 webhooks per client');
  });

  it('leaves the secret unresolved in a service that does not read callers secrets', () => {
    const cfg = parseConfig(withWebhooks('      - { url: https://x.example/h, secret: env:HOOK_SECRET, events: [sent] }'), {}, 'relay.yaml', {
      resolveSecrets: 'none',
    });
    expect(cfg.clients[0]!.webhooks![0]!.secret!.resolved).toBe(false);
  });
});

describe('webhooks of a client managed through the API', () => {
  const hook = { url: 'https://sis.campus.example/hooks/relay', events: ['sent', 'failed', 'sent'] };

  it('takes url and events, without a secret, and knows which have one made', () => {
    const c = parseManagedClient({ name: 'sis', senders: [], webhooks: [hook] }, [], undefined);
    expect(c.webhooks).toEqual([{ url: hook.url, events: ['sent', 'failed'] }]);
    const made = parseManagedClient({ name: 'sis', senders: [], webhooks: [hook] }, [], undefined, undefined, { [hook.url]: '2026-12-05T10:00:00.000Z' });
    expect(made.webhooks).toEqual([{ url: hook.url, events: ['sent', 'failed'], secretCreatedAt: '2026-12-05T10:00:00.000Z' }]);
  });

  it('refuses a secret in the settings and says how to get one', () => {
    for (const field of ['secret', 'previous_secret']) {
      expect(() =>
        parseManagedClient({ name: 'sis', senders: [], webhooks: [hook, { ...hook, url: 'https://x.example/h', [field]: 'whsec_abc' }] }, [], undefined),
      ).toThrow(
        `webhooks[1].${field}: secrets are not accepted in a client's settings; the relay makes the signing secret: run relay webhooks secret <client> <url> (CreateWebhookSecret) after this change`,
      );
    }
  });

  it("checks the URLs and events as relay.yaml's", () => {
    const bad = (webhooks: unknown) => () => parseManagedClient({ name: 'sis', senders: [], webhooks }, [], undefined);
    expect(bad([hook, { ...hook, events: ['queued'] }])).toThrow('webhooks[1].url: the same URL as an earlier webhook of this client');
    expect(bad([{ ...hook, url: 'http://sis.campus.example/h' }])).toThrow(/webhooks\[0\]\.url: must be an https:\/\/ URL/);
    expect(bad([{ ...hook, events: ['delivered'] }])).toThrow(/webhooks\[0\]\.events\[0\]: must be one of queued, sending/);
    expect(bad([{ ...hook, events: [] }])).toThrow(/webhooks\[0\]\.events: must list at least one/);
    expect(bad(Array.from({ length: 11 }, (_, i) => ({ ...hook, url: `https://x.example/${i}` })))).toThrow('webhooks: at most 10 webhooks per client');
  });
});
