import type { SMTPServer, SMTPServerError, SMTPServerOptions } from 'smtp-server';
import type { CertPair } from './tls.js';

/** tls: implicit TLS (like port 465); starttls: STARTTLS offered, AUTH only after it; none: plain. */
export type SmtpSecurity = 'tls' | 'starttls' | 'none';

/**
 * An SMTP reply; put the enhanced status code at the start of `message` ("5.7.60 ..."). A message
 * with "\n" is sent as a multi-line reply, each line with the code ("535-5.7.8 ...", "535 5.7.8 ..."),
 * as Gmail and Exchange answer; start every line with the enhanced status code, as they do.
 */
export interface SmtpReply {
  code: number;
  message: string;
}

export type SmtpConnection = SMTPServer['connections'] extends Set<infer C> ? C : never;

/** smtp-server options shared by the capturing server and the sink. */
export function baseOptions(security: SmtpSecurity, cert: CertPair, auth: boolean): SMTPServerOptions {
  const disabled = auth ? [] : ['AUTH'];
  const common: SMTPServerOptions = {
    name: 'smtp.test.local',
    logger: false,
    // Reverse DNS of 127.0.0.1 only slows every connection down.
    disableReverseLookup: true,
    authOptional: !auth,
    // A long-lived pooled client sends many commands; only AUTH decides who may send.
    maxAllowedUnauthenticatedCommands: false,
  };
  switch (security) {
    case 'tls':
      return { ...common, secure: true, key: cert.keyPem, cert: cert.certPem, disabledCommands: disabled };
    case 'starttls':
      return { ...common, secure: false, key: cert.keyPem, cert: cert.certPem, disabledCommands: disabled };
    case 'none':
      return { ...common, secure: false, allowInsecureAuth: true, disabledCommands: [...disabled, 'STARTTLS'] };
  }
}

export function smtpError(reply: SmtpReply): SMTPServerError {
  return Object.assign(new Error(reply.message), { responseCode: reply.code });
}

/** Listens on 127.0.0.1 and resolves with the port, once the port is bound. */
export function listen(server: SMTPServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const net = server.server;
    const onError = (err: Error) => reject(err);
    net.once('error', onError);
    server.listen(port, '127.0.0.1', () => {
      net.off('error', onError);
      const address = net.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

/**
 * Cuts these client connections, except one in a STARTTLS handshake: destroying that crashes
 * Node, and smtp-server times those out.
 */
export function dropClients(connections: Iterable<SmtpConnection>): void {
  for (const c of connections) if (!c._upgrading) c._socket.destroy();
}

/**
 * Closes the server without waiting out smtp-server's 30 s grace period: open clients (an idle
 * pooled connection, a stuck test) get a 421 and a FIN, and whoever ignores the FIN is destroyed.
 */
export function closeSmtp(server: SMTPServer, graceMs = 250): Promise<void> {
  return new Promise((resolve) => {
    const open = [...server.connections];
    const timer = setTimeout(() => dropClients(open), graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    // A 421 also closes the connection.
    for (const c of open) c.send(421, '4.3.2 Service shutting down');
  });
}

/**
 * Makes `connection` send a reply text with line breaks as a multi-line reply (smtp-server sends
 * an array of lines that way, but replaces line breaks in one text with spaces).
 */
export function multiLineReplies(connection: SmtpConnection): void {
  const send = connection.send.bind(connection);
  connection.send = (code, data, context) => send(code, typeof data === 'string' && data.includes('\n') ? data.split('\n') : data, context);
}
