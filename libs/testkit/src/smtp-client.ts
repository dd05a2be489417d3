import nodemailer from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import { testCa } from './tls.js';

export interface SubmitOptions {
  port: number;
  /** starttls: plain connection upgraded before AUTH (587); tls: implicit TLS (465); none: no TLS at all. */
  security: 'starttls' | 'tls' | 'none';
  auth?: { user: string; pass: string };
  /** Source address on the loopback network (127.0.0.1 unless set). */
  localAddress?: string;
  envelope: { from: string; to: string[] };
  raw: Buffer;
}

/** What the relay answered: the final reply line, or the SMTP error it gave. */
export type SubmitResult =
  | { ok: true; response: string; rejected: string[]; rejectedResponses: string[] }
  | { ok: false; response: string; responseCode: number | undefined; command: string | undefined };

/** Submits one finished message over SMTP with nodemailer, as an application would. */
export async function submit(o: SubmitOptions): Promise<SubmitResult> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: o.port,
    secure: o.security === 'tls',
    requireTLS: o.security === 'starttls',
    ignoreTLS: o.security === 'none',
    tls: { ca: testCa().caPem, servername: 'localhost' },
    ...(o.auth ? { auth: o.auth } : {}),
    ...(o.localAddress ? { localAddress: o.localAddress } : {}),
  } as SMTPTransport.Options);
  try {
    const info = await transport.sendMail({ envelope: o.envelope, raw: o.raw });
    const rejectedErrors = (info as { rejectedErrors?: Array<{ response?: string }> }).rejectedErrors ?? [];
    return { ok: true, response: info.response, rejected: info.rejected.map(String), rejectedResponses: rejectedErrors.map((e) => e.response ?? '') };
  } catch (err) {
    const e = err as Error & { response?: string; responseCode?: number; command?: string };
    return { ok: false, response: e.response ?? e.message, responseCode: e.responseCode, command: e.command };
  } finally {
    transport.close();
  }
}

/** The relay's message id in a `250 2.0.0 OK <id> queued` reply. */
export function queuedId(response: string): string {
  const m = /^250 2\.0\.0 OK (\S+) queued$/.exec(response.trim());
  if (!m) throw new Error(`not a "250 2.0.0 OK <id> queued" reply: ${JSON.stringify(response)}`);
  return m[1]!;
}
