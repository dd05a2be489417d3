import type { PeerCertificate } from 'node:tls';
import type { Unreachable } from './reachability.js';
import { checkCertificate, describeCertificateProblem, isCertificateCode, type CertificateProblem } from './tls-failure.js';

/** Where an SMTP sender connects, as its configuration says. */
export interface SmtpTarget {
  host: string;
  port: number;
  security: 'none' | 'starttls' | 'tls';
  servername?: string | undefined;
  ca?: string | undefined;
}

/** The fields nodemailer puts on a connection-level error. */
export interface SmtpConnectionErrorLike {
  code?: string;
  /** The socket's own code (ECONNREFUSED, CERT_HAS_EXPIRED...) where nodemailer replaced `code` with ESOCKET. */
  originalCode?: string;
  message?: string;
  responseCode?: number;
  /** Which wait ran out on ETIMEDOUT: CONNECT_TIMEOUT, GREETING_TIMEOUT, UPGRADE_TIMEOUT (TLS) or SOCKET_TIMEOUT. */
  timeoutType?: string;
  /** The certificate, on ERR_TLS_CERT_ALTNAME_INVALID. */
  cert?: Partial<PeerCertificate>;
  cause?: unknown;
}

/**
 * Why a connection to an SMTP server failed before the server answered anything, in words, with
 * the host, the port and what to do: DNS, a refused or silent port, a refused certificate (told
 * by looking at the certificate, without Node's hints), or a TLS mode that does not match the
 * port. Undefined when the server answered (its reply is the explanation) or the cause is unknown.
 */
export async function diagnoseSmtpFailure(err: SmtpConnectionErrorLike, smtp: SmtpTarget): Promise<Unreachable | undefined> {
  if (err.responseCode !== undefined) return undefined;
  const causeCode = (err.cause as { code?: string } | undefined)?.code;
  const code = err.originalCode ?? causeCode ?? err.code ?? '';
  const where = `${smtp.host}:${smtp.port}`;
  const at = (cause: string, remedy: string): Unreachable => ({ host: where, cause, remedy });
  const modes = 'submission uses port 587 with security: starttls, or port 465 with security: tls';

  if (DNS_CODES.has(code)) {
    return at(`DNS lookup of ${smtp.host} failed (${code})`, `check smtp.host for typos and that the relay's DNS resolves ${smtp.host}`);
  }
  if (code === 'ECONNREFUSED') {
    return at('connection refused', `check smtp.host and smtp.port (${modes}), and allow outbound TCP ${smtp.port} from the relay to ${smtp.host} (firewall)`);
  }
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return at('no route to the host', `allow outbound TCP ${smtp.port} from the relay to ${smtp.host} (firewall, routing)`);
  }
  if (isCertificateCode(code)) {
    const certCode = code;
    const servername = smtp.servername ?? smtp.host;
    const problem: CertificateProblem =
      (certCode === 'ERR_TLS_CERT_ALTNAME_INVALID' && err.cert ? describeCertificateProblem(certCode, err.cert, servername) : undefined) ??
      (await checkCertificate({ host: smtp.host, port: smtp.port, servername, ca: smtp.ca, starttls: smtp.security === 'starttls' })) ??
      describeCertificateProblem(certCode, undefined, servername);
    return at(`TLS failed: ${problem.cause}`, certificateRemedy(problem, smtp));
  }
  if (code === 'EPROTO' || /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|RECORD_LAYER_FAILURE)/.test(code)) {
    return at('TLS failed: the server does not speak TLS the way security: says', `check smtp.security against smtp.port (${modes})`);
  }
  if (code === 'ETIMEDOUT') {
    if (err.timeoutType === 'UPGRADE_TIMEOUT') {
      return at('the TLS handshake got no answer', `check smtp.security against smtp.port (${modes})`);
    }
    if (err.timeoutType === 'GREETING_TIMEOUT') {
      const remedy =
        smtp.port === 465 && smtp.security !== 'tls'
          ? 'port 465 expects TLS from the first byte: set security: tls'
          : `check smtp.security against smtp.port (${modes}); a proxy or filter may be holding the connection`;
      return at('connected, but the server sent no greeting', remedy);
    }
    return at(
      'no answer (connection timed out)',
      `allow outbound TCP ${smtp.port} from the relay to ${smtp.host} (firewall; many networks block port 25)${smtp.security === 'tls' ? ` and check that the port speaks TLS (${modes})` : ''}`,
    );
  }
  if (code === 'ECONNRESET') {
    return at('the connection was reset', `check smtp.security against smtp.port (${modes}), and that no firewall cuts connections to ${smtp.host}`);
  }
  return undefined;
}

const DNS_CODES = new Set(['EDNS', 'ENOTFOUND', 'EAI_AGAIN', 'ENODATA', 'ESERVFAIL', 'EAI_FAIL']);

function certificateRemedy(problem: CertificateProblem, smtp: SmtpTarget): string {
  switch (problem.kind) {
    case 'name':
      return `set smtp.host to a name the certificate is for (${problem.names.join(', ') || 'none'}), or set smtp.servername to that name when the relay reaches the server under another one`;
    case 'expired':
      return `the administrator of ${smtp.host} must renew its certificate; the relay does not send over an expired one`;
    case 'not-yet-valid':
      return "check the clock of the relay's host (NTP) and the certificate's start date";
    default:
      return `if ${smtp.host} uses its own or a private CA, give the relay that CA's certificate as smtp.ca_pem (or smtp.ca_file); a server with a public certificate must send its intermediate certificates too`;
  }
}
