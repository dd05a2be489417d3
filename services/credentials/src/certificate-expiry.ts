import { senderCertificate, type SenderConfig } from '@relay/config';
import type { RelayInstruments } from '@relay/telemetry';

/** Seconds until each sender's certificate credential stops working (negative once it has). */
export function certificateExpirySeconds(senders: Iterable<SenderConfig>, now = Date.now()): { sender: string; seconds: number }[] {
  const out: { sender: string; seconds: number }[] = [];
  for (const s of senders) {
    const cert = senderCertificate(s);
    if (cert) out.push({ sender: s.id, seconds: Math.floor((cert.notAfter.getTime() - now) / 1000) });
  }
  return out;
}

/**
 * `relay_credential_expiry_seconds{sender,kind="certificate"}`: how long each sender's certificate
 * (its notAfter) still works, read from the current senders whenever metrics are collected.
 * Returns the unregister.
 */
export function registerCertificateExpiryGauge(meter: RelayInstruments['meter'], senders: () => Iterable<SenderConfig>): () => void {
  const gauge = meter.createObservableGauge('relay_credential_expiry_seconds', {
    description: 'Seconds until a sender credential expires, by kind (certificate: its notAfter)',
    unit: 's',
  });
  const observe = (result: { observe(value: number, attributes: Record<string, string>): void }) => {
    for (const { sender, seconds } of certificateExpirySeconds(senders())) result.observe(seconds, { sender, kind: 'certificate' });
  };
  gauge.addCallback(observe);
  return () => gauge.removeCallback(observe);
}
