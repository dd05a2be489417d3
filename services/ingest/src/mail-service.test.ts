import { describe, expect, it } from 'vitest';
import { parseConfig } from '@relay/config';
import { messageLimit } from './mail-service.js';

const MB = 1024 * 1024;

function config(limits = '') {
  return parseConfig(
    `
clients: [{ name: app, api_key: test-key-0123456789abcdef0123456789, senders: [plain, m365, graph, own] }]
senders:
  - { id: plain, from: a@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }
  - { id: m365, from: b@campus.example, transport: smtp, smtp: { host: smtp.office365.com, port: 587, security: starttls }, rate: { preset: microsoft365-smtp } }
  - id: graph
    from: c@campus.example
    transport: graph
    graph: { tenant_id: t, client_id: c, client_secret: s, mailbox: c@campus.example }
  - { id: own, from: d@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls }, rate: { max_message_bytes: 1000 } }
${limits}`,
    {},
  );
}

describe('messageLimit', () => {
  it("takes a sender's own or preset limit, else the relay-wide one", () => {
    const cfg = config();
    const limit = (id: string) => messageLimit(cfg, cfg.senders.find((s) => s.id === id)!);
    expect(limit('plain')).toBe(35 * MB);
    expect(limit('m365')).toBe(35 * MB);
    // Graph takes up to 150 MB through upload sessions.
    expect(limit('graph')).toBe(150 * MB);
    expect(limit('own')).toBe(1000);
  });

  it('applies limits.max_message_bytes to senders without a limit of their own', () => {
    const cfg = config('limits: { max_message_bytes: 2048 }');
    expect(messageLimit(cfg, cfg.senders.find((s) => s.id === 'plain')!)).toBe(2048);
    expect(messageLimit(cfg, cfg.senders.find((s) => s.id === 'graph')!)).toBe(150 * MB);
  });
});
