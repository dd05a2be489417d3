import { describe, expect, it } from 'vitest';
import { parseConfig } from '@relay/config';
import { createSmtpGate } from './gate.js';

const cfg = parseConfig(
  `
clients:
  - { name: j1, api_key: k1-0123456789abcdef0123456789abcdef, senders: [registrar], smtp: { username: J1@campus.example, password: secret } }
  - { name: printer, api_key: k2-0123456789abcdef0123456789abcdef, senders: [scans], smtp: { allow_ips: [10.20.0.0/16, '2001:db8::7'] } }
senders:
  - { id: registrar, from: 'Registrar <registrar@campus.example>', smtp_aliases: [bounces@campus.example], transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }
  - { id: scans, from: scans@campus.example, transport: smtp, smtp: { host: mail.campus.example, port: 587, security: starttls } }
`,
  {},
);
const gate = createSmtpGate(cfg.clients, new Map(cfg.senders.map((s) => [s.id, s])));
const [j1, printer] = cfg.clients as [(typeof cfg.clients)[0], (typeof cfg.clients)[0]];

describe('createSmtpGate', () => {
  it('logs in with the right username (any case) and password only', () => {
    expect(gate.login('j1@campus.example', 'secret')?.name).toBe('j1');
    expect(gate.login('j1@campus.example', 'Secret')).toBeUndefined();
    expect(gate.login('printer', '')).toBeUndefined();
  });

  it('matches source addresses against allow_ips, IPv4-mapped ones too', () => {
    expect(gate.byAddress('10.20.3.4')?.name).toBe('printer');
    expect(gate.byAddress('::ffff:10.20.3.4')?.name).toBe('printer');
    expect(gate.byAddress('2001:db8::7')?.name).toBe('printer');
    expect(gate.byAddress('10.21.0.1')).toBeUndefined();
    expect(gate.byAddress('127.0.0.1')).toBeUndefined();
  });

  it("maps an address to the client's sender by from or smtp_aliases, never another client's", () => {
    expect(gate.senderFor(j1, 'Registrar@Campus.Example')?.id).toBe('registrar');
    expect(gate.senderFor(j1, 'bounces@campus.example')?.id).toBe('registrar');
    expect(gate.senderFor(j1, 'scans@campus.example')).toBeUndefined();
    expect(gate.senderFor(printer, 'registrar@campus.example')).toBeUndefined();
    expect(gate.senderFor(j1, '')).toBeUndefined();
  });
});
