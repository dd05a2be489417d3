import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ContextsFile, readContextsFile } from './contexts.js';
import { formatBytes, formatDuration, parseDuration, parseTime } from './duration.js';
import { resolveTarget } from './target.js';

const contexts = (file: ContextsFile) => ({ path: '/cfg/config.yaml', file });
const two: ContextsFile = {
  'current-context': 'prod',
  contexts: [
    { name: 'prod', address: 'relay.campus.example:443', api_key_env: 'PROD_KEY', tls: true },
    { name: 'lab', address: 'lab:50051', api_key: 'lab-key', ca_file: '/etc/lab-ca.pem' },
  ],
};

describe('resolveTarget', () => {
  it('takes --address, then --context, then RELAY_ADDRESS, then the current context', () => {
    const env = { RELAY_ADDRESS: 'env:1', PROD_KEY: 'prod-key' };
    expect(resolveTarget({ address: 'flag:1' }, env, undefined, contexts(two))).toMatchObject({ address: 'flag:1', source: '--address', tls: undefined });
    expect(resolveTarget({ context: 'lab' }, env, undefined, contexts(two))).toMatchObject({
      address: 'lab:50051',
      apiKey: 'lab-key',
      tls: { caFile: '/etc/lab-ca.pem' },
    });
    expect(resolveTarget({}, env, undefined, contexts(two))).toMatchObject({ address: 'env:1', source: 'RELAY_ADDRESS' });
    expect(resolveTarget({}, { PROD_KEY: 'prod-key' }, undefined, contexts(two))).toMatchObject({
      address: 'relay.campus.example:443',
      apiKey: 'prod-key',
      tls: true,
      source: 'context prod',
    });
  });

  it('prefers --api-key, and the context key over RELAY_API_KEY', () => {
    expect(resolveTarget({ context: 'lab', apiKey: 'flag' }, { RELAY_API_KEY: 'env' }, undefined, contexts(two)).apiKey).toBe('flag');
    expect(resolveTarget({ context: 'lab' }, { RELAY_API_KEY: 'env' }, undefined, contexts(two)).apiKey).toBe('lab-key');
    expect(resolveTarget({ address: 'x:1' }, { RELAY_API_KEY: 'env' }, undefined, contexts(two)).apiKey).toBe('env');
  });

  it('refuses a context whose key variable is unset', () => {
    expect(() => resolveTarget({}, {}, undefined, contexts(two))).toThrow('context prod: its api_key_env PROD_KEY is not set');
  });

  it("sends the stack's demo key only to the stack", () => {
    const stack = { address: '127.0.0.1:50061', apiKey: 'demo-key', sender: 'demo' };
    const none = contexts({ contexts: [] });
    expect(resolveTarget({}, {}, stack, none)).toMatchObject({ address: '127.0.0.1:50061', apiKey: 'demo-key', stack });
    expect(resolveTarget({}, { RELAY_ADDRESS: 'relay.campus.example:443' }, stack, none)).toMatchObject({ apiKey: undefined, stack: undefined });
    expect(resolveTarget({}, {}, undefined, none)).toMatchObject({ address: '127.0.0.1:50051', source: 'default' });
    expect(resolveTarget({}, { RELAY_GRPC_PORT: '6000' }, undefined, none).address).toBe('127.0.0.1:6000');
  });

  it('names a bad address', () => {
    expect(() => resolveTarget({ address: 'http://relay' }, {}, undefined, contexts({ contexts: [] }))).toThrow('expected HOST:PORT');
  });
});

describe('durations and sizes', () => {
  it('parses and formats durations', () => {
    expect(parseDuration('24h', '--overlap')).toBe(86_400_000);
    expect(parseDuration('1h30m', '--overlap')).toBe(5_400_000);
    expect(parseDuration('0s', '--overlap')).toBe(0);
    expect(() => parseDuration('tomorrow', '--overlap')).toThrow('--overlap "tomorrow": expected a duration');
    expect(() => parseDuration('400d', '--overlap')).toThrow('at most 366d');
    expect(formatDuration(90_000)).toBe('1m30s');
    expect(formatDuration(90_061_000)).toBe('1d1h');
  });

  it('reads times as ISO 8601 or a duration ago', () => {
    const now = new Date('2030-01-02T00:00:00Z');
    expect(parseTime('24h', '--since', now).toISOString()).toBe('2030-01-01T00:00:00.000Z');
    expect(parseTime('2030-01-01T08:00:00Z', '--since', now).toISOString()).toBe('2030-01-01T08:00:00.000Z');
    expect(() => parseTime('yesterday', '--since', now)).toThrow('--since "yesterday"');
  });

  it('labels binary sizes as MiB', () => {
    expect(formatBytes(70_000_000)).toBe('66.8 MiB');
    expect(formatBytes(160 * 1024 * 1024)).toBe('160.0 MiB');
  });
});

describe('docs/cli.md', () => {
  it('shows a contexts file the CLI reads', () => {
    const md = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'cli.md'), 'utf8');
    const block = /```yaml contexts-file\n([\s\S]*?)\n```/.exec(md)?.[1];
    expect(block).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), 'relay-cli-docs-'));
    try {
      writeFileSync(join(dir, 'config.yaml'), block!);
      const file = readContextsFile(join(dir, 'config.yaml'));
      expect(file['current-context']).toBe('prod');
      expect(file.contexts.map((c) => c.name)).toEqual(['prod', 'lab']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
