import { parseConfig } from '@relay/config';
import type { RelayInstruments } from '@relay/telemetry';
import { makeAppCertificate } from '@relay/testkit';
import { describe, expect, it } from 'vitest';
import { certificateExpirySeconds, registerCertificateExpiryGauge } from './certificate-expiry.js';

describe('certificate expiry', () => {
  it('reports seconds to each certificate sender’s notAfter as relay_credential_expiry_seconds{sender,kind}', () => {
    const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 10 * 86_400_000);
    const cert = makeAppCertificate({ notAfter });
    try {
      const { senders } = parseConfig(
        `clients: [{ name: a, api_key: ${'k'.repeat(40)} }]
senders:
  - { id: secret, from: s@campus.example, transport: graph, graph: { tenant_id: t, client_id: c, client_secret: x, mailbox: s@campus.example } }
  - { id: cert, from: c@campus.example, transport: graph, graph: { tenant_id: t, client_id: c, mailbox: c@campus.example, client_certificate: { certificate_file: "${cert.certFile}", private_key_file: "${cert.keyFile}" } } }
`,
        {},
      );
      const now = notAfter.getTime() - 3 * 86_400_000;
      expect(certificateExpirySeconds(senders, now)).toEqual([{ sender: 'cert', seconds: 3 * 86_400 }]);
      // Registered on a meter, it observes the senders current at each collection.
      const callbacks: ((r: { observe(v: number, a: Record<string, string>): void }) => void)[] = [];
      let name = '';
      const meter = {
        createObservableGauge: (n: string) => {
          name = n;
          return { addCallback: (cb: (typeof callbacks)[number]) => callbacks.push(cb), removeCallback: () => callbacks.pop() };
        },
      } as unknown as RelayInstruments['meter'];
      const unregister = registerCertificateExpiryGauge(meter, () => senders);
      const seen: [number, Record<string, string>][] = [];
      callbacks[0]!({ observe: (v, a) => seen.push([v, a]) });
      expect(name).toBe('relay_credential_expiry_seconds');
      expect(seen).toHaveLength(1);
      expect(seen[0]![1]).toEqual({ sender: 'cert', kind: 'certificate' });
      expect(seen[0]![0]).toBeGreaterThan(9 * 86_400);
      unregister();
      expect(callbacks).toHaveLength(0);
    } finally {
      cert.remove();
    }
  });
});
