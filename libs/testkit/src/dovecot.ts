import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.js';
import { testCa } from './tls.js';

/** Where Debian's dovecot-imapd puts the server. */
export const DOVECOT_BIN = '/usr/sbin/dovecot';

export interface DovecotOptions {
  /** Mailbox users and their passwords (PLAIN/LOGIN over TLS). */
  users: Record<string, string>;
  /** Default: a free port. Pass one (freePort) to start a server later where a client already points. */
  port?: number;
  /**
   * Enables XOAUTH2 and OAUTHBEARER: Dovecot asks this (through a local token introspection
   * endpoint) whose mailbox an access token opens; undefined refuses the token.
   */
  xoauth2?: (token: string) => string | undefined;
}

export interface TestDovecot {
  host: '127.0.0.1';
  /** IMAP over implicit TLS, with the test CA's certificate for localhost and 127.0.0.1. */
  port: number;
  /** The server's own log lines so far. */
  logs: string[];
  /** Stops the server and removes its mail; safe to call twice. */
  close(): Promise<void>;
}

/**
 * A real Dovecot IMAP server on 127.0.0.1 (implicit TLS, the test CA's certificate), with a
 * passwd-file of `users`, Maildir mail in a temporary directory and a `Sent` folder marked
 * SPECIAL-USE \Sent in every mailbox. As root, its processes run as Debian's dovecot and dovenull
 * users (Dovecot refuses root for them); otherwise as the current user.
 */
export async function startDovecot(opts: DovecotOptions): Promise<TestDovecot> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'relay-dovecot-'));
  const root = process.getuid?.() === 0;
  const login = root ? 'dovenull' : userName();
  const internal = root ? 'dovecot' : userName();
  const uid = root ? idOf('-u', 'dovecot') : process.getuid!();
  const gid = root ? idOf('-g', 'dovecot') : process.getgid!();
  const home = join(dir, 'home');
  mkdirSync(join(dir, 'run'));
  mkdirSync(join(dir, 'state'));
  mkdirSync(home);
  chmodSync(dir, 0o755);
  if (root) chownSync(home, uid, gid);
  const passwd = join(dir, 'passwd');
  writeFileSync(
    passwd,
    Object.entries(opts.users)
      .map(([u, p]) => `${u}:{PLAIN}${p}\n`)
      .join(''),
    { mode: 0o644 },
  );
  const ca = testCa();
  const introspection = opts.xoauth2 ? await startIntrospection(opts.xoauth2) : undefined;
  const oauth2Conf = join(dir, 'oauth2.conf.ext');
  if (introspection) {
    writeFileSync(
      oauth2Conf,
      `introspection_url = http://127.0.0.1:${introspection.port}/introspect\nintrospection_mode = post\nforce_introspection = yes\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n`,
      { mode: 0o644 },
    );
  }
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = /dev/stderr
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <${ca.certFile}
ssl_key = <${ca.keyFile}
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2
default_login_user = ${login}
default_internal_user = ${internal}
default_internal_group = ${groupName(gid)}
first_valid_uid = 1
first_valid_gid = 1
auth_mechanisms = plain login${introspection ? ' xoauth2 oauthbearer' : ''}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${passwd}
}
${introspection ? `passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = ${oauth2Conf}\n}\n` : ''}
userdb {
  driver = static
  args = uid=${uid} gid=${gid} home=${home}/%u
}
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
}
service imap-login {
  chroot =
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${port}
    ssl = yes
  }
}
service auth {
  chroot =
}
`,
  );
  const logs: string[] = [];
  const child = spawn(DOVECOT_BIN, ['-F', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [child.stdout, child.stderr]) s.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await stop(child, exited);
    if (introspection) await new Promise((r) => introspection.server.close(r));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await listening(port, exited, logs);
  } catch (err) {
    await close();
    throw err;
  }
  return { host: '127.0.0.1', port, logs, close };
}

async function stop(child: ChildProcess, exited: Promise<void>) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

async function listening(port: number, exited: Promise<void>, logs: string[]): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const until = Date.now() + 15_000;
  for (;;) {
    if (gone) throw new Error(`dovecot exited at start:\n${logs.join('\n')}`);
    if (await accepts(port)) return;
    if (Date.now() > until) throw new Error(`dovecot did not listen on 127.0.0.1:${port} within 15 s:\n${logs.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function idOf(flag: '-u' | '-g', user: string): number {
  return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
}

function userName(): string {
  return execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
}

function groupName(gid: number): string {
  return execFileSync('getent', ['group', String(gid)], { encoding: 'utf8' }).split(':')[0]!;
}

/**
 * The token introspection endpoint Dovecot's oauth2 passdb posts `token=...` to (RFC 7662 style):
 * active, with the mailbox's name, when `owner` names whose token it is.
 */
async function startIntrospection(owner: (token: string) => string | undefined): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
      if (body.length > 64 * 1024) req.destroy();
    });
    req.on('end', () => {
      // The token as Dovecot wrote it: percent-escapes undone, a `+` (base64) kept as it is.
      const raw = /(?:^|&)token=([^&]*)/.exec(body)?.[1] ?? '';
      const user = owner(raw) ?? owner(safeDecode(raw));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(user ? { active: 'true', username: user } : { active: 'false' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : 0 };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
