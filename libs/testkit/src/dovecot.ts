import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { requireBinary, runsWith } from './binaries.js';
import { freePort } from './net.js';

export const DOVECOT_BIN = process.env.DOVECOT_BIN || '/usr/sbin/dovecot';
/** Suites that need an IMAP server run when Debian's dovecot-imapd is installed, and always in CI. */
export const hasDovecot = runsWith(DOVECOT_BIN);

export interface DovecotUser {
  user: string;
  password: string;
}

export interface PrivateDovecot {
  host: string;
  /** Plain IMAP (no TLS), with PLAIN and LOGIN allowed: for tests only. */
  port: number;
  /** The server's files (config, log, mail in Maildir under mail/<user>). */
  dir: string;
  close(): Promise<void>;
}

/**
 * A dovecot IMAP server of the test's own in a temporary directory: the given users with their
 * passwords, Maildir mailboxes, listening on 127.0.0.1 at a free port. Run as root, mail is kept
 * as the `nobody` user (dovecot refuses to keep it as root).
 */
export async function startDovecot(users: DovecotUser[]): Promise<PrivateDovecot> {
  requireBinary(DOVECOT_BIN, 'apt-get install dovecot-imapd, or set DOVECOT_BIN');
  const dir = mkdtempSync(join(tmpdir(), 'relay-dovecot-'));
  const port = await freePort();
  const me = userInfo();
  const root = me.uid === 0;
  const mailUid = root ? 65534 : me.uid;
  const mailGid = root ? 65534 : me.gid;
  const system = root ? { internal: 'dovecot', login: 'dovenull' } : { internal: me.username, login: me.username };
  for (const d of ['run', 'mail', 'home']) mkdirSync(join(dir, d));
  writeFileSync(join(dir, 'users'), users.map((u) => `${u.user}:{PLAIN}${u.password}::::::\n`).join(''));
  writeFileSync(
    join(dir, 'dovecot.conf'),
    `base_dir = ${dir}/run
state_dir = ${dir}/run
log_path = ${dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
default_internal_user = ${system.internal}
default_login_user = ${system.login}
mail_location = maildir:${dir}/mail/%u
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = static
  args = uid=${mailUid} gid=${mailGid} home=${dir}/home/%u
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service stats {
  inet_listener http {
    port = 0
  }
}
`,
  );
  if (root) {
    // dovecot's own users (auth, mail) reach the files through the directory; the passwords are test ones.
    chmodSync(dir, 0o711);
    chmodSync(join(dir, 'users'), 0o644);
    for (const d of ['mail', 'home']) chownSync(join(dir, d), mailUid, mailGid);
  }
  const child: ChildProcess = spawn(DOVECOT_BIN, ['-F', '-c', join(dir, 'dovecot.conf')], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; ; i++) {
    if (await answers(port)) break;
    if (child.exitCode !== null || i === 100) {
      child.kill('SIGKILL');
      const files = readdirSync(dir).join(', ');
      throw new Error(`dovecot on port ${port} did not start (see ${dir}/dovecot.log; files: ${files})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host: '127.0.0.1',
    port,
    dir,
    async close() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
