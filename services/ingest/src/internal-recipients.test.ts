import { parseConfig, RATE_PRESETS, readEnv } from '@relay/config';
import type { RunnableService } from '@relay/core';
import { createLogger } from '@relay/telemetry';
import {
  clientEntry,
  codeOf,
  createTestClient,
  dropBus,
  newClient,
  serviceTestEnv,
  status,
  submit,
  testCa,
  testNatsUrl,
  uniquePrefix,
  type TestClient,
} from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createIngest } from './ingest.js';

const prefix = uniquePrefix('hve');
const app = newClient('app', ['hve', 'multi', 'plain']);
const hveSmtp = { host: 'smtp.hve.mx.microsoft', port: 587, security: 'starttls' };
const config = parseConfig(
  stringify({
    clients: [{ ...clientEntry(app), smtp: { allow_ips: ['127.0.0.1'] } }],
    senders: [
      { id: 'hve', from: 'Alerts <alerts@campus.example>', transport: 'smtp', smtp: hveSmtp, rate: { preset: 'microsoft365-hve' } },
      {
        id: 'multi',
        from: 'news@campus.example',
        transport: 'smtp',
        smtp: hveSmtp,
        rate: { preset: 'microsoft365-hve' },
        internal_domains: ['campus.example', '*.Hospital.example'],
      },
      { id: 'plain', from: 'plain@campus.example', transport: 'smtp', smtp: { host: 'mail.campus.example', port: 587, security: 'starttls' } },
    ],
  }),
  {},
);

let ingest: RunnableService;
let client: TestClient;
let smtpPort: number;

beforeAll(async () => {
  const env = readEnv({
    NATS_URL: testNatsUrl(),
    RELAY_BUS_PREFIX: prefix,
    RELAY_GRPC_PORT: '0',
    RELAY_HTTP_PORT: '0',
    RELAY_METRICS_PORT: '0',
    RELAY_SMTP_PORT: '0',
    RELAY_TLS_CERT: testCa().certFile,
    RELAY_TLS_KEY: testCa().keyFile,
    RELAY_HOST: '127.0.0.1',
    ...serviceTestEnv('ingest'),
  });
  ingest = await createIngest({ env, config, logger: createLogger({ service: 'test', level: 'silent' }) });
  const ports = (await ingest.start()) as { grpc: number; smtp: number };
  smtpPort = ports.smtp;
  // RELAY_TLS_CERT serves gRPC over TLS too.
  client = createTestClient(`127.0.0.1:${ports.grpc}`, app.apiKey, { caPem: testCa().caPem });
});

afterAll(async () => {
  client?.close();
  await ingest?.stop();
  await dropBus(prefix);
});

const mail = (sender: string, to: string[], cc: string[] = []) => ({ sender, to, cc, subject: 'Notice', text: 'hello' });

describe('the microsoft365-hve preset', () => {
  it("paces within High Volume Email's limits and keeps mail to the from address's domain", () => {
    expect(RATE_PRESETS['microsoft365-hve']).toEqual({
      batchSize: 100,
      intervalMs: 60_000,
      dailyRecipients: 100_000,
      maxRecipientsPerMessage: 10,
      maxMessageBytes: 10 * 1024 * 1024,
    });
    const [hve, multi, plain] = config.senders;
    expect(hve!.rate).toMatchObject({ preset: 'microsoft365-hve', maxRecipientsPerMessage: 10, dailyRecipients: 100_000 });
    expect(hve!.internalDomains).toEqual(['campus.example']);
    expect(multi!.internalDomains).toEqual(['campus.example', '*.hospital.example']);
    expect(plain!.internalDomains).toBeUndefined();
  });

  it('refuses SendMail to a recipient outside the internal domains, naming the rule and the recipient', async () => {
    const refused = await codeOf(client.sendMail(mail('hve', ['ada@campus.example'], ['someone@Gmail.com'])));
    expect(refused).toEqual({
      code: status.INVALID_ARGUMENT,
      details:
        'cc[0]: <someone@Gmail.com> is outside sender "hve"\'s internal domains (campus.example): the microsoft365-hve preset sends to internal recipients only (Microsoft High Volume Email delivers inside the tenant); add the domain to internal_domains if the tenant accepts it',
    });
    // A subdomain is not the domain unless internal_domains says *.
    expect((await codeOf(client.sendMail(mail('hve', ['ada@lab.campus.example'])))).details).toMatch(/^to\[0\]: <ada@lab\.campus\.example> is outside/);
  });

  it('accepts internal recipients, in any case and in listed subdomains', async () => {
    expect((await client.sendMail(mail('hve', ['Ada@Campus.Example', 'Grace <grace@campus.example>']))).messageId).toBeTruthy();
    expect((await client.sendMail(mail('multi', ['ward@icu.hospital.example', 'x@hospital.example', 'y@campus.example']))).messageId).toBeTruthy();
    // A sender without internal domains sends anywhere.
    expect((await client.sendMail(mail('plain', ['someone@gmail.com']))).messageId).toBeTruthy();
  });

  it('refuses the recipient at RCPT TO on the SMTP door, and takes the internal ones', async () => {
    const raw = Buffer.from('From: alerts@campus.example\r\nTo: ada@campus.example\r\nSubject: Notice\r\n\r\nhello\r\n');
    const got = await submit({
      port: smtpPort,
      security: 'starttls',
      envelope: { from: 'alerts@campus.example', to: ['ada@campus.example', 'eve@elsewhere.example'] },
      raw,
    });
    expect(got.ok).toBe(true);
    expect(got.ok && got.rejected).toEqual(['eve@elsewhere.example']);
    expect(got.ok && got.rejectedResponses).toEqual([
      '550 5.7.1 Recipient <eve@elsewhere.example> is outside sender "hve"\'s internal domains (campus.example): the microsoft365-hve preset sends to internal recipients only (Microsoft High Volume Email delivers inside the tenant); add the domain to internal_domains if the tenant accepts it',
    ]);
    expect(got.ok && got.response).toMatch(/^250 2\.0\.0 OK \S+ queued$/);
  });
});
