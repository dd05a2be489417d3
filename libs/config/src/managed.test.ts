import { describe, expect, it } from 'vitest';
import { parseConfig, parseManagedClient, parseManagedSender } from './load.js';
import { MissingSecret, Secret } from './secret.js';

const smtp = { host: 'smtp.office365.com', port: 587, security: 'starttls' };
const resolveNone = (ref: string) => new Secret(ref);

describe('senders managed through the API', () => {
  it('fills secret fields with sealed: references, and resolves them through the given lookup', () => {
    const seen: string[] = [];
    const s = parseManagedSender(
      { id: 'lib', from: 'lib@campus.example', transport: 'smtp', smtp: { ...smtp, auth: { type: 'password', user: 'lib@campus.example' } } },
      (ref, key) => {
        seen.push(`${ref} ${key}`);
        return new MissingSecret('lib', ref.slice('sealed:'.length));
      },
    );
    expect(seen).toEqual(['sealed:smtp.auth.password smtp.auth.password']);
    expect(s.managedBy).toBe('api');
    expect(() => s.smtp!.auth.type === 'password' && s.smtp!.auth.password.reveal()).toThrow(
      'sender "lib": smtp.auth.password is not set; set it with SetSenderSecret (relay senders set-secret lib smtp.auth.password)',
    );
  });

  it('refuses a secret in the settings and names checks as relay.yaml does, without a senders[i] prefix', () => {
    expect(() => parseManagedSender({ id: 'x', from: 'x@campus.example', transport: 'graph', graph: { client_secret: 'v' } }, resolveNone)).toThrow(
      "graph.client_secret: secrets are not accepted in a sender's settings; set it with SetSenderSecret (relay senders set-secret)",
    );
    expect(() =>
      parseManagedSender({ id: 'x', from: 'x@campus.example', transport: 'smtp', smtp: { ...smtp, port: 25, host: 'smtp.gmail.com' } }, resolveNone),
    ).toThrow(/^smtp\.port: /);
    expect(() => parseManagedSender({ id: 'x', from: 'x@campus.example', transport: 'smtp' }, resolveNone)).toThrow('smtp: required for transport: smtp');
    expect(() => parseManagedSender({ id: 'x', from: 'x@campus.example', transport: 'smtp', smtp: { ...smtp, ca_file: '/etc/shadow' } }, resolveNone)).toThrow(
      "smtp.ca_file: not accepted through the API (it names a file on the relay's hosts); use ca_pem, or set it for a sender in relay.yaml",
    );
  });

  it('fills an optional secret only once it is set', () => {
    const auth = { type: 'oauth2', provider: 'google', client_id: 'c', user: 'u@campus.example' };
    const spec = { id: 'g', from: 'g@campus.example', transport: 'smtp', smtp: { ...smtp, host: 'smtp.gmail.com', auth } };
    const unset = parseManagedSender(spec, resolveNone);
    expect(unset.smtp!.auth.type === 'oauth2' && unset.smtp!.auth.refreshToken).toBeUndefined();
    const set = parseManagedSender(spec, resolveNone, (f) => f === 'smtp.auth.refresh_token');
    expect(set.smtp!.auth.type === 'oauth2' && set.smtp!.auth.refreshToken?.reveal()).toBe('sealed:smtp.auth.refresh_token');
  });
});

describe('clients managed through the API', () => {
  it('takes no api_key or SMTP password, and checks its senders', () => {
    expect(() => parseManagedClient({ name: 'a', api_key: 'k'.repeat(40), senders: [] }, [], undefined)).toThrow('api_key: unknown key');
    expect(() => parseManagedClient({ name: 'a', senders: [], smtp: { username: 'u', password: 'p' } }, [], undefined)).toThrow(/smtp\.password: unknown key/);
    expect(() => parseManagedClient({ name: 'a', senders: ['nope'] }, [], new Set(['lib']))).toThrow(
      'senders[0]: "nope" is not a configured sender (senders: lib)',
    );
    const c = parseManagedClient({ name: 'a', senders: ['lib'], smtp: { allow_ips: ['10.0.0.0/8'] } }, [{ id: 'k1', digest: 'ab' }], new Set(['lib']));
    expect(c).toMatchObject({ apiKey: undefined, keys: [{ id: 'k1' }], managedBy: 'api', smtp: { allowIps: ['10.0.0.0/8'] } });
  });
});

describe('relay.yaml', () => {
  it('refuses sealed: references, which stand for secrets set through the API', () => {
    const text = `
clients: [{ name: a, api_key: ${'k'.repeat(40)}, senders: [s] }]
senders:
  - { id: s, from: s@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls, auth: { type: password, user: u, password: "sealed:x" } } }
`;
    expect(() => parseConfig(text, {})).toThrow('relay.yaml: senders[0].smtp.auth.password: "sealed:" stands for a secret set through the operations API');
  });

  it("shows its entries' settings to the API without secrets", () => {
    const text = `
clients: [{ name: a, api_key: ${'k'.repeat(40)}, senders: [s] }]
senders:
  - { id: s, from: s@campus.example, owners: [Jane@Campus.example], transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls, auth: { type: password, user: u, password: hunter2-secret } } }
`;
    const config = parseConfig(text, {});
    expect(JSON.stringify(config.senders[0]!.spec)).not.toContain('hunter2');
    expect(JSON.stringify(config.clients[0]!.spec)).not.toContain('kkkk');
    expect(config.senders[0]).toMatchObject({ managedBy: 'file', owners: ['jane@campus.example'] });
  });
});

describe('presets', () => {
  it("google-smtp-relay paces within Google's SMTP relay limits per user", () => {
    const text = `
clients: [{ name: a, api_key: ${'k'.repeat(40)}, senders: [s] }]
senders:
  - { id: s, from: s@campus.example, transport: smtp, smtp: { host: smtp-relay.gmail.com, port: 587, security: starttls }, rate: { preset: google-smtp-relay } }
`;
    expect(parseConfig(text, {}).senders[0]!.rate).toMatchObject({ dailyMessages: 10_000, dailyRecipients: 10_000, maxRecipientsPerMessage: 100 });
  });
});
