import { isIP, connect as tcpConnect, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';

/** What is wrong with a server's certificate, in words, without Node's own hints. */
export interface CertificateProblem {
  kind: 'expired' | 'not-yet-valid' | 'name' | 'self-signed' | 'untrusted' | 'other';
  /** e.g. `the certificate is for mail.other.example, not smtp.campus.example`. */
  cause: string;
  /** The names the certificate is for (its subjectAltName, else its common name). */
  names: string[];
}

/** OpenSSL's and Node's codes for a certificate the client does not accept. */
const CERT_CODES =
  /^(CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE)/;

export function isCertificateCode(code: string | undefined): boolean {
  return CERT_CODES.test(code ?? '');
}

/** The names a certificate is for. */
export function certificateNames(cert: Partial<PeerCertificate> | undefined): string[] {
  const alt = (cert?.subjectaltname ?? '')
    .split(',')
    .map((s) => s.trim().replace(/^(DNS|IP Address):/, ''))
    .filter(Boolean);
  if (alt.length) return alt;
  const cn = cert?.subject?.CN;
  return cn ? [Array.isArray(cn) ? cn.join(', ') : cn] : [];
}

const day = (text: string | undefined) => {
  const d = text ? new Date(text) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d.toISOString().slice(0, 10) : 'an unknown date';
};

const nameOf = (dn: PeerCertificate['issuer'] | undefined) => {
  const cn = dn?.CN ?? dn?.O;
  return cn ? `"${Array.isArray(cn) ? cn.join(', ') : cn}"` : 'an unnamed issuer';
};

/**
 * Describes a refused certificate in plain words: the name it has against the name asked for, the
 * day it expired, or the issuer nobody here trusts. `code` is OpenSSL's or Node's code.
 */
export function describeCertificateProblem(code: string, cert: Partial<PeerCertificate> | undefined, asked: string): CertificateProblem {
  const names = certificateNames(cert);
  const forNames = names.length ? names.join(', ') : 'no name';
  const the = names.length ? `the certificate for ${forNames}` : 'the certificate';
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return { kind: 'expired', names, cause: `${the} expired on ${day(cert?.valid_to)}` };
    case 'CERT_NOT_YET_VALID':
      return { kind: 'not-yet-valid', names, cause: `${the} is valid only from ${day(cert?.valid_from)}` };
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
    case 'HOSTNAME_MISMATCH':
      return { kind: 'name', names, cause: `the certificate is for ${forNames}, not ${asked}` };
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return { kind: 'self-signed', names, cause: `${the} is self-signed, and the relay does not trust it` };
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return { kind: 'untrusted', names, cause: `${the} comes from a root CA the relay does not trust (${nameOf(cert?.issuer)})` };
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return { kind: 'untrusted', names, cause: `${the} is issued by ${nameOf(cert?.issuer)}, which the relay does not trust` };
    default:
      return { kind: 'other', names, cause: `${the} was refused (${code})` };
  }
}

export interface CertificateCheckOptions {
  host: string;
  port: number;
  /** The name the certificate must carry; default `host`. */
  servername?: string;
  /** PEM of the CAs to trust instead of the system's. */
  ca?: string;
  /** SMTP STARTTLS: greet and ask for TLS before the handshake. */
  starttls?: boolean;
  timeoutMs?: number;
}

/**
 * Looks at the certificate a server presents (accepting it for the look only, nothing is sent
 * over the connection) and tells what the relay would refuse about it. Undefined when the
 * certificate is fine or the server could not be reached.
 */
export async function checkCertificate(opts: CertificateCheckOptions): Promise<CertificateProblem | undefined> {
  const timeoutMs = opts.timeoutMs ?? 3_000;
  const servername = opts.servername ?? opts.host;
  let socket: Socket | undefined;
  let tls: TLSSocket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  const look = async (): Promise<CertificateProblem | undefined> => {
    socket = tcpConnect({ host: opts.host, port: opts.port });
    socket.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      socket!.once('connect', resolve);
      socket!.once('error', reject);
    });
    if (opts.starttls) await startTls(socket);
    tls = tlsConnect({
      socket,
      ...(isIP(servername) ? {} : { servername }),
      ...(opts.ca ? { ca: opts.ca } : {}),
      rejectUnauthorized: false,
    });
    tls.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      tls!.once('secureConnect', resolve);
      tls!.once('error', reject);
    });
    const cert = tls.getPeerCertificate();
    const refused = tls.authorizationError as unknown as string | Error | null;
    const code = typeof refused === 'string' ? refused : (refused as NodeJS.ErrnoException | null)?.code;
    if (code) return describeCertificateProblem(code, cert, servername);
    const identity = checkServerIdentity(servername, cert) as NodeJS.ErrnoException | undefined;
    if (identity) return describeCertificateProblem(identity.code ?? 'ERR_TLS_CERT_ALTNAME_INVALID', cert, servername);
    return undefined;
  };
  try {
    return await Promise.race([look().catch(() => undefined), deadline]);
  } finally {
    clearTimeout(timer);
    tls?.destroy();
    socket?.destroy();
  }
}

/** Reads one whole SMTP reply (its last line is `NNN text`); at most 16 KB. */
function readReply(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.length > 16_384) return finish(new Error('reply too long'));
      if (/(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(text)) finish();
    };
    const onEnd = () => finish(new Error('closed'));
    const finish = (err?: Error) => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', finish);
      if (err) reject(err);
      else resolve(text);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', finish);
  });
}

async function startTls(socket: Socket): Promise<void> {
  const expect = async (code: string) => {
    const reply = await readReply(socket);
    if (!reply.startsWith(code)) throw new Error(`unexpected reply ${reply.slice(0, 60)}`);
  };
  await expect('220');
  socket.write('EHLO relay.invalid\r\n');
  await expect('250');
  socket.write('STARTTLS\r\n');
  await expect('220');
}
