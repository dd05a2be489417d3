import { describe, expect, it } from 'vitest';
import { serviceNameFromArgv } from './service-name.js';

describe('serviceNameFromArgv', () => {
  it('names each service from how it was started', () => {
    expect(serviceNameFromArgv(['node', '/repo/services/ingest/dist/main.js'])).toBe('relay-ingest');
    expect(serviceNameFromArgv(['node', 'services/smtp-sender/dist/main.js'])).toBe('relay-smtp-sender');
    expect(serviceNameFromArgv(['node', 'dist/main.js'])).toBeUndefined();
    expect(serviceNameFromArgv(['node', '/app/relay.mjs', 'graph-sender'])).toBe('relay-graph-sender');
    expect(serviceNameFromArgv(['node', '/app/relay.mjs', 'credentials'])).toBe('relay-credentials');
  });

  it('names nothing it does not know', () => {
    expect(serviceNameFromArgv(['node', '/app/relay.mjs', 'nope'])).toBeUndefined();
    expect(serviceNameFromArgv(['node', '/repo/services/other/dist/main.js'])).toBeUndefined();
    expect(serviceNameFromArgv(['node', '/repo/tools/dist/stack/stack.js'])).toBeUndefined();
    expect(serviceNameFromArgv(['node'])).toBeUndefined();
  });
});
