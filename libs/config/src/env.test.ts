import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isConfigError } from '@relay/core';
import { afterAll, describe, expect, it } from 'vitest';
import { readEnv, requireEnvelopeKeys } from './env.js';

const dir = mkdtempSync(join(tmpdir(), 'relay-env-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configError(env: Record<string, string>): string {
  try {
    readEnv(env);
  } catch (err) {
    if (isConfigError(err)) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('NATS credentials and TLS from the environment', () => {
  it('takes one way to log in, and the TLS files', () => {
    const e = readEnv({ NATS_NKEY_SEED_FILE: '/run/secrets/nats/seed', NATS_TLS_CA: '/ca.pem', NATS_TLS_CERT: '/c.pem', NATS_TLS_KEY: '/k.pem' });
    expect(e.nats).toMatchObject({ nkeySeedFile: '/run/secrets/nats/seed', tlsCa: '/ca.pem', tlsCert: '/c.pem', tlsKey: '/k.pem' });
    expect(readEnv({}).nats).toEqual({});
    expect(readEnv({ NATS_USER: 'ingest', NATS_PASSWORD: 'pw' }).nats).toMatchObject({ user: 'ingest', password: 'pw' });
  });

  it('names what is wrong: two ways at once, a user without password, a certificate without key', () => {
    expect(configError({ NATS_CREDS: '/a.creds', NATS_NKEY_SEED_FILE: '/b.nk' })).toContain('set one of them');
    expect(configError({ NATS_USER: 'ingest' })).toContain('NATS_PASSWORD: required');
    expect(configError({ NATS_TLS_CERT: '/c.pem' })).toContain('NATS_TLS_CERT and NATS_TLS_KEY');
  });
});

describe('the envelope key', () => {
  it('comes from RELAY_ENVELOPE_KEY or a file, with earlier keys for a rotation', () => {
    const key = randomBytes(32);
    const file = join(dir, 'envelope-key');
    writeFileSync(file, `${key.toString('base64')}\n`);
    const old = randomBytes(32);
    const keys = requireEnvelopeKeys(readEnv({ RELAY_ENVELOPE_KEY_FILE: file, RELAY_ENVELOPE_KEY_OLD: old.toString('base64') }));
    expect(keys.current.equals(key)).toBe(true);
    expect(keys.previous.map((k) => k.toString('hex'))).toEqual([old.toString('hex')]);
  });

  it('is required by the services that use it, 32 bytes, and never taken from the master key', () => {
    expect(() => requireEnvelopeKeys(readEnv({ RELAY_MASTER_KEY: randomBytes(32).toString('base64') }))).toThrow(/RELAY_ENVELOPE_KEY: required/);
    expect(configError({ RELAY_ENVELOPE_KEY: randomBytes(16).toString('base64') })).toContain('must be 32 bytes');
    expect(configError({ RELAY_ENVELOPE_KEY_FILE: join(dir, 'missing') })).toContain('cannot read');
  });
});

describe('the trace URL template', () => {
  it('is optional, and kept as given when it is an http(s) URL with {trace_id}', () => {
    expect(readEnv({}).traceUrlTemplate).toBeUndefined();
    expect(readEnv({ RELAY_TRACE_URL_TEMPLATE: 'http://jaeger.campus:16686/trace/{trace_id}' }).traceUrlTemplate).toBe(
      'http://jaeger.campus:16686/trace/{trace_id}',
    );
    const grafana = 'https://grafana.campus/explore?left={"queries":[{"query":"{trace_id}"}]}';
    expect(readEnv({ RELAY_TRACE_URL_TEMPLATE: grafana }).traceUrlTemplate).toBe(grafana);
  });

  it('names the variable when it has no {trace_id}, is no URL, or not http(s)', () => {
    expect(configError({ RELAY_TRACE_URL_TEMPLATE: 'http://jaeger.campus:16686/trace/' })).toMatch(/^RELAY_TRACE_URL_TEMPLATE: .* must contain \{trace_id\}/);
    expect(configError({ RELAY_TRACE_URL_TEMPLATE: 'jaeger/trace/{trace_id}' })).toMatch(/^RELAY_TRACE_URL_TEMPLATE: .* is not a URL/);
    expect(configError({ RELAY_TRACE_URL_TEMPLATE: 'javascript:alert(1)//{trace_id}' })).toMatch(
      /^RELAY_TRACE_URL_TEMPLATE: .* must be an http:\/\/ or https:\/\/ URL/,
    );
    expect(configError({ RELAY_TRACE_URL_TEMPLATE: `https://t.campus/${'x'.repeat(2_000)}/{trace_id}` })).toMatch(/^RELAY_TRACE_URL_TEMPLATE: at most 2000/);
  });
});
