import { createTransport } from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { startSmtpSink } from './smtp-sink.js';
import { testCa } from './tls.js';

describe('startSmtpSink', () => {
  it('counts messages and bytes from a pooled client without keeping them', async () => {
    const sink = await startSmtpSink();
    const client = createTransport({ pool: true, maxConnections: 3, host: sink.host, port: sink.port, ignoreTLS: true });
    const text = 'x'.repeat(1000);
    await Promise.all(Array.from({ length: 30 }, (_, i) => client.sendMail({ from: 'a@x.example', to: 'b@x.example', subject: `m${i}`, text })));
    expect(await sink.waitForCount(30, 5000)).toBe(30);
    expect(sink.bytes).toBeGreaterThan(30 * 1000);
    expect(sink.connections).toBeLessThanOrEqual(3);
    await sink.close();
    client.close();
  });

  it('accepts any credentials over implicit TLS when asked to', async () => {
    const sink = await startSmtpSink({ security: 'tls', acceptAnyAuth: true });
    const client = createTransport({ host: 'localhost', port: sink.port, secure: true, tls: { ca: testCa().caPem }, auth: { user: 'u', pass: 'anything' } });
    await client.sendMail({ from: 'a@x.example', to: 'b@x.example', text: 'x' });
    expect(sink.count).toBe(1);
    await sink.close();
  });

  it('waitForCount says how many arrived when it times out', async () => {
    const sink = await startSmtpSink();
    await expect(sink.waitForCount(1, 50)).rejects.toThrow('expected 1 message(s) within 50 ms, but the sink counted 0');
    await sink.close();
    await sink.close();
  });
});
