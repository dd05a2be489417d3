import { request } from 'node:https';
import { RelayError, ErrorCode } from '@relay/core';
import { createLogger } from '@relay/telemetry';
import { testCa } from '@relay/testkit';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PUBLIC_HTTP_LIMITS, startPublicHttp, type ConsentReturn, type PublicHttp } from './public-http.js';

const logger = createLogger({ service: 'test', level: 'silent' });
const relayed: ConsentReturn[] = [];
let failRelay = false;
let http: PublicHttp;
let base: string;

beforeAll(async () => {
  http = await startPublicHttp({
    port: 0,
    host: '127.0.0.1',
    ready: async () => true,
    logger,
    completeConsent: async (f) => {
      if (failRelay) throw new RelayError(ErrorCode.Unavailable, 'the credentials service is unavailable: connect ECONNREFUSED');
      relayed.push(f);
      return f.state === 'good' ? { status: 200, message: 'Sender "x" is authorized.' } : { status: 400, message: `echo: ${f.errorDescription}` };
    },
  });
  base = `http://127.0.0.1:${http.port}`;
});
afterAll(() => http.close());

describe('the consent callback on the public port', () => {
  it('relays only the four redirect fields and renders the answer', async () => {
    const res = await fetch(`${base}/oauth/callback?state=good&code=c1&session_state=s&extra=1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/<h1>Signed in<\/h1><p>Sender &#34;x&#34; is authorized.<\/p>/);
    expect(relayed.at(-1)).toEqual({ state: 'good', code: 'c1', error: '', errorDescription: '' });
  });

  it('sends nosniff and a strict CSP, and escapes what it echoes', async () => {
    const attack = '<script>alert(document.cookie)</script>';
    const res = await fetch(`${base}/oauth/callback?${new URLSearchParams({ state: 's', error: 'access_denied', error_description: attack })}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const page = await res.text();
    expect(page).not.toContain('<script');
    expect(page).toContain('&#60;script&#62;alert(document.cookie)&#60;/script&#62;');
  });

  it('refuses, without relaying, a missing state, a repeated field, an over-long field or target', async () => {
    const before = relayed.length;
    expect((await fetch(`${base}/oauth/callback?code=c`)).status).toBe(400);
    const twice = await fetch(`${base}/oauth/callback?state=a&state=b`);
    expect(twice.status).toBe(400);
    expect(await twice.text()).toMatch(/carries &#34;state&#34; more than once/);
    const longCode = await fetch(`${base}/oauth/callback?state=a&code=${'c'.repeat(PUBLIC_HTTP_LIMITS.consent.code + 1)}`);
    expect(longCode.status).toBe(400);
    expect(await longCode.text()).toMatch(/&#34;code&#34; is longer than 4096 characters/);
    expect((await fetch(`${base}/oauth/callback?state=a&pad=${'p'.repeat(PUBLIC_HTTP_LIMITS.urlBytes)}`)).status).toBe(414);
    expect((await fetch(`${base}/oauth/callback?state=a`, { method: 'POST' })).status).toBe(405);
    expect(relayed.length).toBe(before);
  });

  it('refuses headers larger than the bound', async () => {
    const res = await fetch(`${base}/healthz`, { headers: { 'x-pad': 'h'.repeat(PUBLIC_HTTP_LIMITS.headerBytes + 1) } });
    expect(res.status).toBe(431);
  });

  it('answers 503 without the internal cause when the credentials service cannot be reached', async () => {
    failRelay = true;
    try {
      const res = await fetch(`${base}/oauth/callback?state=s&code=c`);
      expect(res.status).toBe(503);
      const page = await res.text();
      expect(page).toMatch(/could not reach its credentials service/);
      expect(page).not.toMatch(/ECONNREFUSED/);
    } finally {
      failRelay = false;
    }
  });

  it('serves health and 404 for anything else', async () => {
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('ok\n');
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
  });
});

describe('TLS', () => {
  it('serves HTTPS with the given pair', async () => {
    const ca = testCa();
    const tls = await startPublicHttp({
      port: 0,
      host: '127.0.0.1',
      tls: { cert: readFileSync(ca.certFile), key: readFileSync(ca.keyFile) },
      ready: async () => true,
      logger,
      completeConsent: async () => ({ status: 200, message: 'ok' }),
    });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        request({ host: '127.0.0.1', port: tls.port, path: '/healthz', ca: ca.caPem, servername: 'localhost' }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        })
          .on('error', reject)
          .end();
      });
      expect(body).toBe('ok\n');
    } finally {
      await tls.close();
    }
  });
});
