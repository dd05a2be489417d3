import type { Envelope } from '@relay/proto';
import type { RawMail } from './send-raw.js';

/**
 * A message submitted over the SMTP door, as it goes out: the client's bytes untouched, with the
 * relay's trace header and X-Relay-Message-ID put in front, and the SMTP envelope it came with.
 * Undefined for a message composed from fields (SendMail).
 */
export function submittedMail(env: Envelope, trace: Record<string, string> = {}): RawMail | undefined {
  if (env.rawMime.length === 0) return undefined;
  const lines = [...Object.entries(trace).map(([k, v]) => `${k}: ${v}`), `X-Relay-Message-ID: ${env.messageId}`];
  const prefix = Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1');
  const raw = Buffer.from(env.rawMime.buffer, env.rawMime.byteOffset, env.rawMime.byteLength);
  return {
    envelope: { from: env.envelopeFrom, to: [...env.envelopeTo], ...(hasEightBit(raw) ? { use8BitMime: true } : {}) },
    raw: Buffer.concat([prefix, raw]),
    messageId: headerMessageId(raw) ?? `<${env.messageId}@campus-relay>`,
  };
}

/** The Message-ID field's value from the header section, for the pool's logs. */
function headerMessageId(raw: Buffer): string | undefined {
  let end = raw.indexOf('\r\n\r\n');
  if (end < 0) end = Math.min(raw.length, 64 * 1024);
  const m = /(?:^|\n)message-id:[ \t]*(<[^>\r\n]*>)/i.exec(raw.subarray(0, end).toString('latin1'));
  return m?.[1];
}

function hasEightBit(raw: Buffer): boolean {
  for (let i = 0; i < raw.length; i++) if (raw[i]! > 0x7f) return true;
  return false;
}
