import { lookup } from 'node:dns/promises';
import { isIP, connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { checkCertificate, isCertificateCode } from './tls-failure.js';

/** Why a host could not be reached, and what to do about it. */
export interface Unreachable {
  host: string;
  /** e.g. `DNS lookup failed (ENOTFOUND)`, `connection refused`, `no answer within 5 s`, `TLS failed (CERT_HAS_EXPIRED)`. */
  cause: string;
  remedy: string;
}

/** The whole diagnosis, so that a caller's deadline (10 s for a token) leaves room for the answer. */
const TIMEOUT_MS = 3_000;

/**
 * Finds where the way to an HTTPS endpoint breaks: DNS, the TCP connection, or the TLS handshake.
 * Libraries that report only "network request failed" (MSAL does) are followed by this, so an
 * error names the host and the cause. Undefined when all three work (the failure was elsewhere).
 */
export async function diagnoseHttps(url: string, timeoutMs = TIMEOUT_MS): Promise<Unreachable | undefined> {
  // Through a proxy the relay does not connect to the host itself: a direct probe would mislead.
  if (process.env.HTTPS_PROXY || process.env.https_proxy) return undefined;
  // One budget for the three steps: the caller is waiting for its answer.
  let timer: NodeJS.Timeout | undefined;
  const budget = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  try {
    return await Promise.race([probe(url, timeoutMs), budget]);
  } finally {
    clearTimeout(timer);
  }
}

async function probe(url: string, timeoutMs: number): Promise<Unreachable | undefined> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || (u.protocol === 'http:' ? 80 : 443));
  const where = port === 443 ? host : `${host}:${port}`;
  try {
    await lookup(host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return { host: where, cause: `DNS lookup failed (${code})`, remedy: `check that the relay's DNS resolves ${host}` };
  }
  const tcp = await attempt((done) => {
    const s = tcpConnect({ host, port, timeout: timeoutMs });
    s.once('connect', () => done(undefined, s));
    s.once('timeout', () => done(new Error('timeout'), s));
    s.once('error', (e) => done(e, s));
    s.once('close', () => done(new Error('closed'), s));
  });
  if (tcp) {
    const code = (tcp as NodeJS.ErrnoException).code;
    const cause =
      code === 'ECONNREFUSED'
        ? 'connection refused'
        : tcp.message === 'timeout'
          ? `no answer within ${timeoutMs / 1000} s`
          : `connection failed (${code ?? tcp.message})`;
    return { host: where, cause, remedy: `allow outbound TCP ${port} from the relay to ${host} (firewall, proxy)` };
  }
  if (u.protocol !== 'https:') return undefined;
  const tls = await attempt((done) => {
    const s = tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), timeout: timeoutMs });
    s.once('secureConnect', () => done(undefined, s));
    s.once('timeout', () => done(new Error('timeout'), s));
    s.once('error', (e) => done(e, s));
    s.once('close', () => done(Object.assign(new Error('closed before the handshake'), { code: 'ECONNRESET' }), s));
  });
  if (tls) {
    const code = (tls as NodeJS.ErrnoException).code ?? tls.message;
    // A refused certificate is told in words: its names, its end, its issuer.
    const problem = isCertificateCode(code) ? await checkCertificate({ host, port, timeoutMs }) : undefined;
    return {
      host: where,
      cause: problem ? `TLS failed: ${problem.cause}` : `TLS failed (${code})`,
      remedy: problem
        ? `if a proxy between the relay and ${host} inspects TLS, give the relay that proxy's CA (NODE_EXTRA_CA_CERTS)`
        : `the relay does not trust ${host}'s certificate; if a proxy inspects TLS, give the relay its CA (NODE_EXTRA_CA_CERTS)`,
    };
  }
  return undefined;
}

type Probe = { destroy(): void; on(event: 'error', fn: () => void): unknown };

function attempt(run: (done: (err: Error | undefined, socket: Probe) => void) => void): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    run((err, socket) => {
      // Later errors of a socket given up on (a reset after the close) are expected.
      socket.on('error', () => {});
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(err);
    });
  });
}
