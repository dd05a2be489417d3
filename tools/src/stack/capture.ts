import { mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

/** Largest message the capture server takes: above the relay's own 35 MB default. */
const CAPTURE_MAX_BYTES = 64 * 1024 * 1024;

export interface CapturedMessage {
  from: string;
  to: string[];
  subject: string;
  /** Absolute path of the .eml file. */
  file: string;
  bytes: number;
}

export interface CaptureServer {
  host: string;
  port: number;
  dir: string;
  /** Stops listening and closes open connections. Safe to call twice. */
  close(): Promise<void>;
}

export interface CaptureOptions {
  dir: string;
  host?: string;
  /** Tried first; when it is taken, any free port. */
  port?: number;
  onMessage?: (msg: CapturedMessage) => void;
  onError?: (err: Error) => void;
}

/**
 * A local SMTP server for the demo: no auth, no TLS, every message written as an .eml file into
 * `dir`. Stands in for a real mail server so the whole path runs on one machine.
 */
export async function startCaptureServer(opts: CaptureOptions): Promise<CaptureServer> {
  const host = opts.host ?? '127.0.0.1';
  mkdirSync(opts.dir, { recursive: true });
  let seq = 0;

  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    size: CAPTURE_MAX_BYTES,
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null) => void) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (err: Error) => callback(err));
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          callback(Object.assign(new Error('552 message exceeds the capture server size limit'), { responseCode: 552 }));
          return;
        }
        const raw = Buffer.concat(chunks);
        const file = join(opts.dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${++seq}.eml`);
        // Read the envelope now: the session resets it once the message is answered.
        const { mailFrom, rcptTo } = session.envelope;
        const msg: CapturedMessage = {
          from: mailFrom ? mailFrom.address : '',
          to: rcptTo.map((r) => r.address),
          subject: readSubject(raw),
          file,
          bytes: raw.length,
        };
        writeFile(file, raw).then(
          () => {
            callback();
            opts.onMessage?.(msg);
          },
          (err: Error) => callback(err),
        );
      });
    },
  });
  server.on('error', (err: Error) => opts.onError?.(err));

  let port: number;
  try {
    port = await listen(server, opts.port ?? 0, host);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !opts.port) throw err;
    port = await listen(server, 0, host);
  }

  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    dir: opts.dir,
    close: () => (closing ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}

function listen(server: SMTPServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.server.once('error', onError);
    server.listen(port, host, () => {
      server.server.off('error', onError);
      resolve((server.server.address() as AddressInfo).port);
    });
  });
}

/** The decoded Subject of a raw message (header block only; RFC 2047 encoded words decoded). */
export function readSubject(raw: Buffer | string): string {
  const text = typeof raw === 'string' ? raw : raw.subarray(0, 64 * 1024).toString('utf8');
  const end = text.search(/\r?\n\r?\n/);
  const head = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const line = head.split(/\r?\n/).find((l) => /^subject:/i.test(l));
  if (!line) return '';
  return decodeWords(line.slice('subject:'.length).trim());
}

const WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;
const WORD_RUN = /(?:=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=\s*)*=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=/g;

function decodeWords(value: string): string {
  // Whitespace between encoded words is not part of the text (RFC 2047 §6.2), and a character may
  // be split across two words, so a run of words is decoded as one byte string per charset.
  return value.replace(WORD_RUN, (run) => {
    let out = '';
    let charset = '';
    let bytes: Buffer[] = [];
    const flush = () => {
      if (bytes.length) out += decodeBytes(Buffer.concat(bytes), charset);
      bytes = [];
    };
    for (const [, cs = '', enc = '', data = ''] of run.matchAll(WORD)) {
      const name = cs.split('*')[0] ?? cs;
      if (name.toLowerCase() !== charset.toLowerCase()) flush();
      charset = name;
      bytes.push(
        enc.toUpperCase() === 'B'
          ? Buffer.from(data, 'base64')
          : Buffer.from(
              data.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
              'latin1',
            ),
      );
    }
    flush();
    return out;
  });
}

function decodeBytes(bytes: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}
