import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isConfigError } from '@relay/core';
import { parseConfig } from './load.js';
import { unresolvedSecrets } from './secret.js';
import { readEnv } from './env.js';

const base = `
clients:
  - name: billing-app
    api_key: env:BILLING_API_KEY
    senders: [no-reply]
  - name: it-ops
    api_key: ops-key-literal-0123456789abcdef0123
    senders: []
    admin: true
senders:
  - id: no-reply
    from: no-reply@campus.example
    reply_to: help@campus.example
    transport: smtp
    smtp:
      host: smtp.office365.com
      port: 587
      security: starttls
      auth: { type: password, user: no-reply@campus.example, password: env:NOREPLY_PASSWORD }
    rate: { preset: microsoft365-smtp, batch_size: 10 }
  - id: registrar
    from: registrar@campus.example
    transport: graph
    graph: { tenant_id: t, client_id: c, client_secret: s3cret, mailbox: registrar@campus.example }
    rate: { preset: microsoft365-graph }
`;
const env = { BILLING_API_KEY: 'billing-key-0123456789abcdef0123456789', NOREPLY_PASSWORD: 'hunter2' };

function configError(text: string, e: Record<string, string> = env): string {
  try {
    parseConfig(text, e);
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('reads the documented example, resolving secrets and merging presets', () => {
    const cfg = parseConfig(base, env);
    expect(cfg.clients[0]!.apiKey!.reveal()).toBe(env.BILLING_API_KEY);
    expect(cfg.clients[1]).toMatchObject({ name: 'it-ops', admin: true, senders: [] });
    const smtp = cfg.senders[0]!;
    expect(smtp.smtp).toMatchObject({ host: 'smtp.office365.com', port: 587, security: 'starttls' });
    expect(smtp.smtp!.auth).toMatchObject({ type: 'password', user: 'no-reply@campus.example' });
    expect(smtp.rate).toMatchObject({ batchSize: 10, intervalMs: 60_000, dailyRecipients: 10_000, maxRecipientsPerMessage: 500 });
    expect(cfg.senders[1]!.graph).toMatchObject({
      authorityUrl: 'https://login.microsoftonline.com',
      graphUrl: 'https://graph.microsoft.com',
      saveToSentItems: true,
    });
    expect(cfg.limits.maxMessageBytes).toBe(35 * 1024 * 1024);
    expect(cfg.delivery.maxAgeMs).toBe(86_400_000);
  });

  it('reads store limits, held mail age and failed retention, with defaults', () => {
    const d = parseConfig(base, env);
    expect(d.limits.heldMaxAgeMs).toBe(72 * 3_600_000);
    expect(d.delivery.failedRetentionMs).toBe(7 * 86_400_000);
    expect(d.limits.store.submitted).toEqual({ maxMessages: undefined, maxBytes: undefined });
    const set = parseConfig(
      `${base}limits:\n  held_max_age: 2h\n  store:\n    submitted: { max_messages: 1000, max_bytes: -1 }\n    bodies: { max_bytes: 1073741824 }\ndelivery:\n  failed_retention: 3d\n`,
      env,
    );
    expect(set.limits).toMatchObject({ maxMessageBytes: 35 * 1024 * 1024, heldMaxAgeMs: 7_200_000 });
    expect(set.limits.store.submitted).toEqual({ maxMessages: 1000, maxBytes: -1 });
    expect(set.limits.store.bodies).toEqual({ maxMessages: undefined, maxBytes: 1_073_741_824 });
    expect(set.delivery).toMatchObject({ failedRetentionMs: 3 * 86_400_000, maxAgeMs: 86_400_000 });
    expect(configError(`${base}limits:\n  store:\n    held: { max_messages: 0 }\n`)).toContain('limits.store.held.max_messages');
    expect(configError(`${base}limits:\n  store:\n    queue: { max_messages: 5 }\n`)).toContain('queue');
  });

  it('paces a graph sender with the microsoft365-graph preset when it has no rate:', () => {
    const cfg = parseConfig(base.replace('    rate: { preset: microsoft365-graph }\n', ''), env);
    expect(cfg.senders[1]!.rate).toMatchObject({
      preset: 'microsoft365-graph',
      batchSize: 10_000,
      intervalMs: 600_000,
      maxConcurrent: 4,
      dailyRecipients: 10_000,
    });
    expect(cfg.senders[0]!.rate).toBeDefined();
    const unpacedSmtp = parseConfig(base.replace(/ {4}rate: \{ preset: microsoft365-smtp[^\n]*\n/, ''), env);
    expect(unpacedSmtp.senders[0]!.rate).toBeUndefined();
  });

  it('gives senders that sign in as the same mailbox one pacing key', () => {
    const smtp = (id: string, user: string | undefined, host = 'smtp.office365.com') =>
      `  - { id: ${id}, from: ${id}@campus.example, transport: smtp, smtp: { host: ${host}, port: 587, security: starttls${user ? `, auth: { type: password, user: ${user}, password: p }` : ''} } }\n`;
    const cfg = parseConfig(
      'clients: [{ name: app, api_key: test-key-0123456789abcdef0123456789, senders: [] }]\nsenders:\n' +
        smtp('admissions', 'relay@campus.example') +
        smtp('bursar', 'Relay@Campus.example') +
        smtp('library', 'library@campus.example') +
        smtp('other-host', 'relay@campus.example', 'smtp.gmail.com') +
        smtp('anonymous', undefined) +
        '  - { id: graph-a, from: a@campus.example, transport: graph, graph: { tenant_id: t, client_id: c, client_secret: s, mailbox: Shared@campus.example } }\n' +
        '  - { id: graph-b, from: b@campus.example, transport: graph, graph: { tenant_id: t, client_id: c, client_secret: s, mailbox: shared@campus.example } }\n',
      env,
    );
    const key = (id: string) => cfg.senders.find((s) => s.id === id)!.pacingKey;
    expect(key('admissions')).toBe(key('bursar'));
    expect(key('admissions')).toMatch(/^mailbox-[0-9a-f]{20}$/);
    expect(key('library')).not.toBe(key('admissions'));
    expect(key('other-host')).not.toBe(key('admissions'));
    expect(key('anonymous')).toBe('anonymous');
    expect(key('graph-a')).toBe(key('graph-b'));
    expect(key('graph-a')).not.toBe(key('admissions'));
  });

  it('never prints a secret', () => {
    const cfg = parseConfig(base, env);
    const shown = JSON.stringify(cfg) + inspect(cfg, { depth: 10 }) + String(cfg.clients[0]!.apiKey);
    expect(shown).not.toContain('hunter2');
    expect(shown).not.toContain('billing-key');
    expect(shown).toContain('[secret]');
  });

  it('reads file: secrets', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-cfg-'));
    writeFileSync(join(dir, 'pw'), 'from-file\n');
    const cfg = parseConfig(base.replace('env:NOREPLY_PASSWORD', `file:${join(dir, 'pw')}`), env);
    const auth = cfg.senders[0]!.smtp!.auth;
    expect(auth.type === 'password' && auth.password.reveal()).toBe('from-file');
  });

  it('names the key of every problem', () => {
    expect(configError(base.replace('security: starttls', 'security: starttls\n      colour: blue'))).toMatch(/senders\[0\]\.smtp\.colour: unknown key/);
    expect(configError(base.replace('port: 587', 'port: 99999'))).toMatch(/senders\[0\]\.smtp\.port:/);
    expect(configError(base.replace('transport: smtp', 'transport: carrier-pigeon'))).toMatch(/senders\[0\]\.transport:/);
    expect(configError(base.replace('from: no-reply@campus.example', 'from: not-an-address'))).toMatch(/senders\[0\]\.from: must be an email address/);
    expect(configError(base, { NOREPLY_PASSWORD: 'x' })).toMatch(/clients\[0\]\.api_key: environment variable BILLING_API_KEY is not set/);
    expect(configError(base.replace('senders: [no-reply]', 'senders: [nobody]'))).toMatch(/clients\[0\]\.senders\[0\]: "nobody" is not a configured sender/);
    expect(configError(base.replace('    transport: graph\n', '    transport: graph\n    smtp: { host: x, port: 587, security: none }\n'))).toMatch(
      /senders\[1\]\.smtp: not allowed with transport: graph/,
    );
    expect(
      configError(
        base.replace(
          / {2}- id: registrar[\s\S]*$/,
          '  - id: no-reply\n    from: a@b.example\n    transport: smtp\n    smtp: { host: x, port: 587, security: none }\n',
        ),
      ),
    ).toMatch(/senders\[1\]\.id: duplicate sender id/);
    expect(configError('clients: []\nsenders: []\n')).toMatch(/clients: at least one client/);
    expect(configError('clients: [\n')).toMatch(/not valid YAML/);
    expect(configError(base.replace('rate: { preset: microsoft365-graph }', 'rate: { batch_size: 5 }'))).toMatch(
      /senders\[1\]\.rate\.interval: required with batch_size/,
    );
    expect(configError(base.replace('rate: { preset: microsoft365-graph }', 'rate: { batch_size: 5, interval: soon }'))).toMatch(
      /senders\[1\]\.rate\.interval: invalid duration "soon"/,
    );
  });

  it('refuses an API key shorter than 32 characters, naming the client', () => {
    expect(configError(base, { ...env, BILLING_API_KEY: 'x'.repeat(31) })).toMatch(
      /clients\[0\]\.api_key: the key of client "billing-app" is shorter than 32 characters/,
    );
    expect(configError(base.replace('ops-key-literal-0123456789abcdef0123', 'REPLACE'))).toMatch(
      /clients\[1\]\.api_key: the key of client "it-ops" is shorter than 32/,
    );
    expect(parseConfig(base, { ...env, BILLING_API_KEY: 'x'.repeat(32) }).clients[0]!.apiKey!.reveal()).toHaveLength(32);
  });

  it('reads per-client limits', () => {
    const limited = base.replace(
      '    senders: [no-reply]\n',
      '    senders: [no-reply]\n    limits: { messages_per_second: 2, bytes_per_second: 1000, max_stored_messages: 50, max_stored_bytes: 100000, daily_recipients: 3000 }\n',
    );
    expect(parseConfig(limited, env).clients[0]!.limits).toEqual({
      messagesPerSecond: 2,
      bytesPerSecond: 1000,
      maxStoredMessages: 50,
      maxStoredBytes: 100000,
      dailyRecipients: 3000,
    });
    expect(parseConfig(base, env).clients[1]!.limits).toEqual({
      messagesPerSecond: undefined,
      bytesPerSecond: undefined,
      maxStoredMessages: undefined,
      maxStoredBytes: undefined,
      dailyRecipients: undefined,
    });
    expect(configError(limited.replace('max_stored_messages: 50', 'max_stored_messages: -1'))).toMatch(/clients\[0\]\.limits\.max_stored_messages:/);
    expect(configError(limited.replace('bytes_per_second: 1000', 'bytes_per_sec: 1000'))).toMatch(/clients\[0\]\.limits\.bytes_per_sec: unknown key/);
  });

  it('refuses port 25 toward Microsoft 365 and Gmail with the reason', () => {
    expect(configError(base.replace('port: 587', 'port: 25'))).toMatch(/senders\[0\]\.smtp\.port: port 25 toward smtp\.office365\.com is refused.*587/);
    const gmail = base.replace('host: smtp.office365.com', 'host: smtp.gmail.com').replace('port: 587', 'port: 25');
    expect(configError(gmail)).toMatch(/port 25 toward smtp\.gmail\.com is refused/);
    const own = base.replace('host: smtp.office365.com', 'host: mail.campus.example').replace('port: 587', 'port: 25');
    expect(parseConfig(own, env).senders[0]!.smtp!.port).toBe(25);
  });
});

describe('parseConfig says what is wrong', () => {
  const at = (from: string, to: string, e: Record<string, string> = env) => configError(base.replace(from, to), e);

  it('tells a wrong type from a missing key', () => {
    expect(at('port: 587', 'port: "587"')).toBe('relay.yaml: senders[0].smtp.port: expected a number, got the string "587"');
    expect(at('port: 587', 'port: 5.5')).toBe('relay.yaml: senders[0].smtp.port: expected a whole number, got the number 5.5');
    expect(at('port: 587', 'port:')).toBe('relay.yaml: senders[0].smtp.port: expected a number, got an empty value');
    expect(at('      port: 587\n', '')).toBe('relay.yaml: senders[0].smtp.port: required');
    expect(at('    admin: true', '    admin: yes')).toBe('relay.yaml: clients[1].admin: expected true or false, got the string "yes"');
    expect(at('senders: [no-reply]', 'senders: no-reply')).toBe('relay.yaml: clients[0].senders: expected a list, got the string "no-reply"');
    expect(at('      port: 587', '      port: 587\n      timeouts: { connect: true }')).toBe(
      'relay.yaml: senders[0].smtp.timeouts.connect: expected a string or a number, got the boolean true',
    );
  });

  it('never shows the value of a secret it refuses', () => {
    expect(at('password: env:NOREPLY_PASSWORD', 'password: 31415926')).toBe('relay.yaml: senders[0].smtp.auth.password: expected a string, got a number');
  });

  it('names the allowed values of a choice', () => {
    expect(at('security: starttls', 'security: startls')).toBe('relay.yaml: senders[0].smtp.security: must be one of tls, starttls, none (got "startls")');
    expect(at('      security: starttls\n', '')).toBe('relay.yaml: senders[0].smtp.security: required, one of tls, starttls, none');
    expect(at('type: password', 'type: pasword')).toBe('relay.yaml: senders[0].smtp.auth.type: must be one of password, oauth2, none (got "pasword")');
  });

  it('suggests the key a typo meant, and lists the keys when nothing is near', () => {
    expect(at('port: 587', 'prot: 587')).toBe('relay.yaml: senders[0].smtp.prot: unknown key; did you mean "port"?');
    expect(at('security: starttls', 'securty: starttls')).toBe('relay.yaml: senders[0].smtp.securty: unknown key; did you mean "security"?');
    expect(at('user: no-reply@campus.example, password', 'usr: no-reply@campus.example, password')).toBe(
      'relay.yaml: senders[0].smtp.auth.usr: unknown key; did you mean "user"?',
    );
    expect(at('clients:', 'client:')).toBe('relay.yaml: client: unknown key; did you mean "clients"?');
    expect(at('security: starttls', 'security: starttls\n      colour: blue')).toBe(
      'relay.yaml: senders[0].smtp.colour: unknown key (allowed keys: host, port, security, servername, ca_file, ca_pem, auth, pool, timeouts)',
    );
  });

  it('reports every problem once, without a "required" for the key a typo meant', () => {
    const text = base
      .replace('port: 587', 'prot: 587')
      .replace('security: starttls', 'security: startls')
      .replace('from: registrar@campus.example', 'form: registrar@campus.example');
    expect(configError(text)).toBe(
      'relay.yaml: senders[0].smtp.security: must be one of tls, starttls, none (got "startls"); senders[0].smtp.prot: unknown key; did you mean "port"?; senders[1].form: unknown key; did you mean "from"?',
    );
  });

  it('refuses a shell variable where a secret goes', () => {
    expect(at('client_secret: s3cret', 'client_secret: $GRAPH_SECRET')).toBe(
      'relay.yaml: senders[1].graph.client_secret: "$GRAPH_SECRET" looks like a shell variable; write env:GRAPH_SECRET to read it from the environment',
    );
    const block = base.replace(
      'graph: { tenant_id: t, client_id: c, client_secret: s3cret, mailbox: registrar@campus.example }',
      ['graph:', '      tenant_id: t', '      client_id: c', '      client_secret: ${GRAPH_SECRET}', '      mailbox: registrar@campus.example'].join('\n'),
    );
    expect(configError(block)).toBe(
      'relay.yaml: senders[1].graph.client_secret: "${GRAPH_SECRET}" looks like a shell variable; write env:GRAPH_SECRET to read it from the environment',
    );
    expect(at('env:NOREPLY_PASSWORD', 'env:$NOREPLY_PASSWORD')).toBe(
      "relay.yaml: senders[0].smtp.auth.password: write env:NOREPLY_PASSWORD, without the $ (env: takes the variable's name)",
    );
    // Not a variable name alone: an ordinary literal.
    expect(parseConfig(base.replace('client_secret: s3cret', 'client_secret: "pa$word1"'), env).senders[1]!.graph!.clientSecret!.reveal()).toBe('pa$word1');
  });

  it('says that a sender a client names is not defined', () => {
    expect(at('senders: [no-reply]', 'senders: [no-reply, billing]')).toBe(
      'relay.yaml: clients[0].senders[1]: "billing" is not a configured sender (senders: no-reply, registrar)',
    );
  });
});

describe('readEnv', () => {
  it('applies the documented defaults', () => {
    const e = readEnv({});
    expect(e).toMatchObject({
      natsUrl: 'nats://127.0.0.1:4222',
      redisUrl: 'redis://127.0.0.1:6379',
      grpcPort: 50051,
      httpPort: 8080,
      publicUrl: 'http://localhost:8080',
    });
  });
  it('keeps internal ports on loopback unless RELAY_INTERNAL_HOST opens them', () => {
    expect(readEnv({ RELAY_HOST: '0.0.0.0' })).toMatchObject({ host: '0.0.0.0', internalHost: '127.0.0.1', tls: undefined });
    expect(readEnv({ RELAY_INTERNAL_HOST: '0.0.0.0' }).internalHost).toBe('0.0.0.0');
  });
  it('reads RELAY_TLS_CERT and RELAY_TLS_KEY together, naming the one missing or unreadable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-tls-'));
    writeFileSync(join(dir, 'cert.pem'), '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'key.pem'), '-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n');
    expect(readEnv({ RELAY_TLS_CERT: join(dir, 'cert.pem'), RELAY_TLS_KEY: join(dir, 'key.pem') }).tls?.cert.toString()).toMatch(/BEGIN CERTIFICATE/);
    expect(() => readEnv({ RELAY_TLS_CERT: join(dir, 'cert.pem') })).toThrow(/RELAY_TLS_KEY: required with RELAY_TLS_CERT/);
    expect(() => readEnv({ RELAY_TLS_CERT: join(dir, 'nope.pem'), RELAY_TLS_KEY: join(dir, 'key.pem') })).toThrow(/RELAY_TLS_CERT: cannot read/);
    expect(() => readEnv({ RELAY_TLS_CERT: join(dir, 'key.pem'), RELAY_TLS_KEY: join(dir, 'key.pem') })).toThrow(/RELAY_TLS_CERT: .* holds no PEM certificate/);
    expect(() => readEnv({ RELAY_GRPC_MAX_CONNECTIONS_PER_PEER: '-1' })).toThrow(/RELAY_GRPC_MAX_CONNECTIONS_PER_PEER: "-1" is not a whole number/);
  });
  it('names the variable that is wrong', () => {
    expect(() => readEnv({ RELAY_GRPC_PORT: 'abc' })).toThrow(/RELAY_GRPC_PORT: "abc" is not a port/);
    expect(() => readEnv({ RELAY_MASTER_KEY: 'c2hvcnQ=' })).toThrow(/RELAY_MASTER_KEY: must be 32 bytes/);
    expect(() => readEnv({ RELAY_STREAM_REPLICAS: '9' })).toThrow(/RELAY_STREAM_REPLICAS: "9" must be 1 to 5/);
    expect(readEnv({ RELAY_STREAM_REPLICAS: '3' }).streamReplicas).toBe(3);
    expect(() => readEnv({ RELAY_JS_REPLICAS: '0' })).toThrow(/RELAY_JS_REPLICAS: "0" must be 1 to 5/);
    expect(readEnv({ RELAY_JS_REPLICAS: '3', RELAY_STREAM_REPLICAS: '5' }).streamReplicas).toBe(3);
    expect(readEnv({}).streamReplicas).toBe(1);
    expect(readEnv({ RELAY_MASTER_KEY: Buffer.alloc(32, 1).toString('base64') }).masterKey).toHaveLength(32);
  });
});

describe('secrets left unresolved', () => {
  it('ingest (callers-only) resolves API keys and starts without the sender secrets set', () => {
    const cfg = parseConfig(base, { BILLING_API_KEY: 'billing-key-0123456789abcdef0123456' }, 'relay.yaml', { resolveSecrets: 'callers-only' });
    expect(cfg.clients[0]!.apiKey!.reveal()).toBe('billing-key-0123456789abcdef0123456');
    const auth = cfg.senders[0]!.smtp!.auth;
    expect(auth.type === 'password' && auth.password.resolved).toBe(false);
    expect(() => (auth.type === 'password' ? auth.password.reveal() : '')).toThrow(/senders\[0\]\.smtp\.auth\.password: this service does not read secrets/);
    // A literal secret's value is not kept either.
    expect(inspect(cfg, { depth: 10 })).not.toContain('s3cret');
    expect(JSON.stringify(cfg)).not.toContain('s3cret');
  });

  it('none: no secret env var or file is needed, and every reference is listed', () => {
    const text = base.replace('env:BILLING_API_KEY', 'file:/nonexistent/billing-key');
    const cfg = parseConfig(text, {}, 'relay.yaml', { resolveSecrets: 'none' });
    expect(unresolvedSecrets(cfg).map((s) => [s.key, s.ref])).toEqual([
      ['clients[0].api_key', 'file:/nonexistent/billing-key'],
      ['clients[1].api_key', 'literal'],
      ['senders[0].smtp.auth.password', 'env:NOREPLY_PASSWORD'],
      ['senders[1].graph.client_secret', 'literal'],
    ]);
  });

  it('senders-only (credentials) resolves sender secrets without the API keys set', () => {
    const cfg = parseConfig(base, { NOREPLY_PASSWORD: 'hunter2' }, 'relay.yaml', { resolveSecrets: 'senders-only' });
    expect(cfg.clients[0]!.apiKey!.resolved).toBe(false);
    const auth = cfg.senders[0]!.smtp!.auth;
    expect(auth.type === 'password' && auth.password.reveal()).toBe('hunter2');
  });

  it('all (the default) still needs every secret', () => {
    expect(configError(base, { BILLING_API_KEY: 'billing-key' })).toMatch(
      /senders\[0\]\.smtp\.auth\.password: environment variable NOREPLY_PASSWORD is not set/,
    );
  });
});

describe('internal authentication', () => {
  it('takes a token of at least 32 characters, from the environment or a file', () => {
    const token = 'x'.repeat(32);
    expect(readEnv({ RELAY_INTERNAL_TOKEN: token }).internalAuth).toEqual({ kind: 'token', token });
    expect(readEnv({}).internalAuth).toBeUndefined();
    expect(() => readEnv({ RELAY_INTERNAL_TOKEN: 'short' })).toThrow(/RELAY_INTERNAL_TOKEN: the internal token must be at least 32 characters/);
    const dir = mkdtempSync(join(tmpdir(), 'relay-token-'));
    writeFileSync(join(dir, 'token'), `${token}\n`);
    expect(readEnv({ RELAY_INTERNAL_TOKEN_FILE: join(dir, 'token') }).internalAuth).toEqual({ kind: 'token', token });
    expect(() => readEnv({ RELAY_INTERNAL_TOKEN_FILE: join(dir, 'missing') })).toThrow(/RELAY_INTERNAL_TOKEN_FILE: cannot read/);
    const admin = 'a'.repeat(32);
    expect(readEnv({ RELAY_INTERNAL_TOKEN: token, RELAY_INTERNAL_ADMIN_TOKEN: admin }).internalAuth).toEqual({ kind: 'token', token, adminToken: admin });
    expect(() => readEnv({ RELAY_INTERNAL_TOKEN: token, RELAY_INTERNAL_ADMIN_TOKEN: 'short' })).toThrow(
      /RELAY_INTERNAL_ADMIN_TOKEN: the internal token must be at least 32/,
    );
  });

  it('needs all three of CA, certificate and key for mutual TLS', () => {
    expect(() => readEnv({ RELAY_INTERNAL_CA: '/x/ca.pem' })).toThrow(/RELAY_INTERNAL_CERT, RELAY_INTERNAL_KEY: required with RELAY_INTERNAL_CA/);
  });
});

describe('SMTP pool defaults', () => {
  it('keeps a connection for a thousand messages and opens five at most when pool is not set', () => {
    const smtp = parseConfig(base, env).senders.find((s) => s.id === 'no-reply')!.smtp!;
    expect(smtp.pool).toEqual({ maxConnections: 5, maxMessages: 1000 });
    const partial = parseConfig(base.replace('security: starttls', 'security: starttls\n      pool: { max_connections: 2 }'), env).senders.find(
      (s) => s.id === 'no-reply',
    )!.smtp!;
    expect(partial.pool).toEqual({ maxConnections: 2, maxMessages: 1000 });
  });
});
