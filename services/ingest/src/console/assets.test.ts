import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@relay/telemetry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPublicHttp, type PublicHttp } from '../public-http.js';
import { serveAssets } from './assets.js';

const dir = mkdtempSync(join(tmpdir(), 'relay-console-'));
const outside = join(dir, '..', `secret-${process.pid}.txt`);
let http: PublicHttp;
let base: string;

beforeAll(async () => {
  mkdirSync(join(dir, 'dist', 'assets'), { recursive: true });
  writeFileSync(join(dir, 'dist', 'index.html'), '<!doctype html><title>console</title>');
  writeFileSync(join(dir, 'dist', 'assets', 'index-abc.js'), 'console.log(1)');
  writeFileSync(outside, 'not for the web');
  http = await startPublicHttp({
    port: 0,
    host: '127.0.0.1',
    ready: async () => true,
    logger: createLogger({ service: 'test', level: 'silent' }),
    completeConsent: async () => ({ status: 400, message: 'x' }),
    routes: [serveAssets(join(dir, 'dist'))],
  });
  base = `http://127.0.0.1:${http.port}`;
});
afterAll(async () => {
  await http.close();
  rmSync(dir, { recursive: true, force: true });
  rmSync(outside, { force: true });
});

describe('console assets', () => {
  it('serves the build with its types, hashed files cached, and a CSP that allows only this origin', async () => {
    const js = await fetch(`${base}/assets/index-abc.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toMatch(/immutable/);
    expect(await js.text()).toBe('console.log(1)');
    const page = await fetch(`${base}/`);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'.*connect-src 'self'/);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(await page.text()).toContain('<title>console</title>');
  });

  it('answers any other path with the page, never a file outside the build', async () => {
    expect(await (await fetch(`${base}/senders/x`)).text()).toContain('<title>console</title>');
    for (const path of [`/../secret-${process.pid}.txt`, `/%2e%2e/%2e%2e/secret-${process.pid}.txt`, '/..%2f..%2fetc%2fpasswd']) {
      const text = await (await fetch(`${base}${path}`)).text();
      expect(text, path).not.toContain('not for the web');
      expect(text, path).not.toContain('root:');
    }
  });

  it('says the console is not built when it is not', async () => {
    const empty = await startPublicHttp({
      port: 0,
      host: '127.0.0.1',
      ready: async () => true,
      logger: createLogger({ service: 'test', level: 'silent' }),
      completeConsent: async () => ({ status: 400, message: 'x' }),
      routes: [serveAssets(join(dir, 'nothing'))],
    });
    try {
      const res = await fetch(`http://127.0.0.1:${empty.port}/`);
      expect(res.status).toBe(503);
      expect(await res.text()).toMatch(/npm run build/);
    } finally {
      await empty.close();
    }
  });
});
