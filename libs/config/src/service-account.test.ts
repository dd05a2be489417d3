import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, parseManagedSender, SENDER_SECRET_FIELDS, senderSecretFields } from './load.js';
import { MissingSecret, Secret } from './secret.js';

const KEY = 'k'.repeat(40);
const EMAIL = 'relay-mailer@campus-relay.iam.gserviceaccount.com';
let dir: string;
let pkcs8: string;
let pkcs1: string;
let keyFile: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-sa-'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  pkcs8 = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  pkcs1 = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  keyFile = join(dir, 'sa.json');
  writeFileSync(
    keyFile,
    JSON.stringify({ type: 'service_account', project_id: 'p', private_key_id: 'kid-1', private_key: pkcs8, client_email: EMAIL, client_id: '1234567890' }),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sender = (auth: string) => `
clients: [{ name: a, api_key: ${KEY}, senders: [gmail] }]
senders:
  - id: gmail
    from: no-reply@campus.example
    transport: smtp
    smtp: { host: smtp.gmail.com, port: 587, security: starttls, auth: { type: oauth2, provider: google, user: no-reply@campus.example, ${auth} } }
`;
const inline = `flow: service_account, service_account: { client_email: ${EMAIL}, private_key: env:SA_KEY }`;
const errorOf = (text: string, env: Record<string, string> = {}) => {
  try {
    parseConfig(text, env);
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
};

describe('Google service account (domain-wide delegation) in relay.yaml', () => {
  it('reads service_account: the address, the key as PKCS#8, no client id needed', () => {
    const auth = parseConfig(sender(inline), { SA_KEY: pkcs1 }).senders[0]!.smtp!.auth;
    expect(auth.type === 'oauth2' && auth.flow).toBe('service_account');
    if (auth.type !== 'oauth2') return;
    expect(auth.serviceAccount!.clientEmail).toBe(EMAIL);
    expect(auth.serviceAccount!.privateKey.reveal()).toBe(pkcs8);
    expect(auth.clientId).toBe('');
    expect(auth.user).toBe('no-reply@campus.example');
  });

  it('takes the key as the JSON file writes it, with \\n escapes (as an environment variable often holds it)', () => {
    const auth = parseConfig(sender(inline), { SA_KEY: pkcs8.trim().replaceAll('\n', '\\n') }).senders[0]!.smtp!.auth;
    expect(auth.type === 'oauth2' && auth.serviceAccount!.privateKey.reveal()).toBe(pkcs8);
  });

  it('reads service_account_file: address, key, key id and client id from the JSON key file', () => {
    const auth = parseConfig(sender(`flow: service_account, service_account_file: "${keyFile}"`), {}).senders[0]!.smtp!.auth;
    if (auth.type !== 'oauth2') throw new Error('not oauth2');
    expect(auth.serviceAccount).toMatchObject({ clientEmail: EMAIL, privateKeyId: 'kid-1', file: keyFile });
    expect(auth.serviceAccount!.privateKey.reveal()).toBe(pkcs8);
    expect(auth.clientId).toBe('1234567890');
  });

  it('does not read the key file in a service that reads no secrets', () => {
    const auth = parseConfig(sender('flow: service_account, service_account_file: /nonexistent/sa.json'), {}, 'relay.yaml', { resolveSecrets: 'none' })
      .senders[0]!.smtp!.auth;
    expect(auth.type === 'oauth2' && auth.serviceAccount!.privateKey.resolved).toBe(false);
  });

  it('names what is wrong', () => {
    const at = 'relay.yaml: senders[0].smtp.auth';
    expect(errorOf(sender(`service_account: { client_email: ${EMAIL}, private_key: env:SA_KEY }`), { SA_KEY: pkcs8 })).toBe(
      `${at}.service_account: only used with flow: service_account (add flow: service_account, or remove service_account)`,
    );
    expect(errorOf(sender('flow: service_account'))).toBe(
      `${at}.service_account: required for flow: service_account (client_email and private_key), or service_account_file`,
    );
    expect(errorOf(sender(`${inline}, service_account_file: "${keyFile}"`), { SA_KEY: pkcs8 })).toBe(
      `${at}.service_account_file: give service_account or service_account_file, not both`,
    );
    expect(errorOf(sender(`${inline}, client_secret: s`), { SA_KEY: pkcs8 })).toBe(
      `${at}.client_secret: not used with flow: service_account (the service account's key signs in)`,
    );
    expect(errorOf(sender(inline).replace('provider: google', 'provider: microsoft'), { SA_KEY: pkcs8 })).toBe(
      `${at}.flow: service_account is only available with provider: google (Microsoft apps use client_credentials)`,
    );
    expect(errorOf(sender(inline), { SA_KEY: 'not a key' })).toBe(
      `${at}.service_account.private_key: not an unencrypted PEM private key (ERR_OSSL_UNSUPPORTED); give the "private_key" of the service account's JSON key file`,
    );
    expect(errorOf(sender('flow: service_account, service_account: { client_email: mailer, private_key: x }'))).toContain(
      "senders[0].smtp.auth.service_account.client_email: must be the service account's address, e.g. relay-mailer@project.iam.gserviceaccount.com",
    );
    const notSa = join(dir, 'oauth-client.json');
    writeFileSync(notSa, JSON.stringify({ installed: { client_id: 'x' } }));
    expect(errorOf(sender(`flow: service_account, service_account_file: "${notSa}"`))).toBe(
      `${at}.service_account_file: ${notSa} is not a Google service account key (a JSON file with "type": "service_account", "client_email" and "private_key"; create one under IAM & Admin → Service accounts → the account → Keys → Add key → JSON)`,
    );
    expect(errorOf(sender(`flow: service_account, client_id: "999", service_account_file: "${keyFile}"`))).toBe(
      `${at}.client_id: "999" is not the client_id of ${keyFile} ("1234567890"); leave client_id out or give that one`,
    );
    // Other flows still need the OAuth client's id.
    expect(errorOf(sender('refresh_token: r'))).toBe(`${at}.client_id: required`);
  });
});

describe('a Google service account sender managed through the API', () => {
  const spec = (auth: Record<string, unknown>) => ({
    id: 'gmail',
    from: 'no-reply@campus.example',
    transport: 'smtp',
    smtp: { host: 'smtp.gmail.com', port: 587, security: 'starttls', auth: { type: 'oauth2', provider: 'google', user: 'no-reply@campus.example', ...auth } },
  });

  it('takes the private key through SetSenderSecret', () => {
    expect(SENDER_SECRET_FIELDS).toContain('smtp.auth.service_account.private_key');
    const s = spec({ flow: 'service_account', service_account: { client_email: EMAIL } });
    expect(senderSecretFields(s)).toEqual([{ field: 'smtp.auth.service_account.private_key', required: true }]);
    const unset = parseManagedSender(s, (ref) => new MissingSecret('gmail', ref.slice('sealed:'.length)));
    const auth = unset.smtp!.auth;
    if (auth.type !== 'oauth2') throw new Error('not oauth2');
    expect(() => auth.serviceAccount!.privateKey.reveal()).toThrow(
      'sender "gmail": smtp.auth.service_account.private_key is not set; set it with SetSenderSecret (relay senders set-secret gmail smtp.auth.service_account.private_key)',
    );
    const set = parseManagedSender(s, () => new Secret(pkcs1)).smtp!.auth;
    expect(set.type === 'oauth2' && set.serviceAccount!.privateKey.reveal()).toBe(pkcs8);
  });

  it('refuses a key file path and a key in the settings', () => {
    expect(() => parseManagedSender(spec({ flow: 'service_account', service_account_file: '/etc/relay/sa.json' }), (r) => new Secret(r))).toThrow(
      "smtp.auth.service_account_file: not accepted through the API (it names a file on the relay's hosts); use service_account: { client_email } and SetSenderSecret for smtp.auth.service_account.private_key, or set it for a sender in relay.yaml",
    );
    expect(() =>
      parseManagedSender(spec({ flow: 'service_account', service_account: { client_email: EMAIL, private_key: pkcs8 } }), (r) => new Secret(r)),
    ).toThrow("smtp.auth.service_account.private_key: secrets are not accepted in a sender's settings; set it with SetSenderSecret (relay senders set-secret)");
  });
});

describe('Graph sender flows', () => {
  const graph = (extra: string) => `
clients: [{ name: a, api_key: ${KEY}, senders: [dept] }]
senders:
  - id: dept
    from: dept@campus.example
    transport: graph
    graph: { tenant_id: t, client_id: c, client_secret: s, mailbox: dept@campus.example${extra} }
`;
  it('is app-only unless flow: refresh_token asks for the mailbox delegated sign-in', () => {
    expect(parseConfig(graph(''), {}).senders[0]!.graph!.flow).toBeUndefined();
    expect(parseConfig(graph(', flow: refresh_token'), {}).senders[0]!.graph!.flow).toBe('refresh_token');
    expect(errorOf(graph(', flow: delegated'))).toMatch(/^relay\.yaml: senders\[0\]\.graph\.flow: .*client_credentials.*refresh_token/);
  });
});
