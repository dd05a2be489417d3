import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { stringify } from 'yaml';
import type { CapturedMessage } from './capture.js';
import { STACK_DIR } from './stack-file.js';

/** The demo configuration's fixed names: well known on purpose, it only reaches the capture server. */
export const DEMO = {
  client: 'demo',
  apiKey: 'demo-key-reaches-only-the-capture-server',
  adminClient: 'demo-admin',
  adminApiKey: 'demo-admin-key-reaches-only-the-capture-server',
  sender: 'demo',
  from: 'demo@relay.localhost',
  configFile: 'demo-relay.yaml',
  captureDir: 'captured',
  masterKeyFile: 'demo-master-key',
  smtpPort: 2525,
  /** The SMTP door's submission port (STARTTLS) in demo mode, when free; else any free port. */
  submissionPort: 2587,
  smtpUser: 'demo',
  smtpPassword: 'demo-smtp-password',
} as const;

/** The demo relay.yaml: one client and one sender that delivers to the capture SMTP server. */
export function demoConfigYaml(smtp: { host: string; port: number }): string {
  const config = {
    clients: [
      { name: DEMO.client, api_key: DEMO.apiKey, senders: [DEMO.sender], smtp: { username: DEMO.smtpUser, password: DEMO.smtpPassword } },
      { name: DEMO.adminClient, api_key: DEMO.adminApiKey, senders: [DEMO.sender], admin: true },
    ],
    senders: [
      {
        id: DEMO.sender,
        from: DEMO.from,
        transport: 'smtp',
        smtp: { host: smtp.host, port: smtp.port, security: 'none' },
      },
    ],
  };
  return `# Written by npm run stack for its demo mode; set RELAY_CONFIG to run your own configuration.\n${stringify(config)}`;
}

export function demoPaths(root: string) {
  const dir = join(root, STACK_DIR);
  return {
    dir,
    config: join(dir, DEMO.configFile),
    captureDir: join(dir, DEMO.captureDir),
    masterKey: join(dir, DEMO.masterKeyFile),
  };
}

/** Writes the demo config under `.relay/` and returns its path. */
export function writeDemoConfig(root: string, smtp: { host: string; port: number }): string {
  const paths = demoPaths(root);
  mkdirSync(paths.dir, { recursive: true });
  writeFileSync(paths.config, demoConfigYaml(smtp));
  return paths.config;
}

/**
 * The demo's RELAY_MASTER_KEY: made once and kept in `.relay/`, because secrets the credentials
 * service stored in a long-lived NATS under one key cannot be read under the next.
 */
export function demoMasterKey(root: string): string {
  const paths = demoPaths(root);
  try {
    const key = readFileSync(paths.masterKey, 'utf8').trim();
    if (Buffer.from(key, 'base64').length === 32) return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = randomBytes(32).toString('base64');
  mkdirSync(paths.dir, { recursive: true });
  writeFileSync(paths.masterKey, `${key}\n`, { mode: 0o600 });
  return key;
}

/** `captured: <from> → <to> "<subject>" (<file>)`, the file relative to the repository root. */
export function formatCaptured(msg: CapturedMessage, root: string): string {
  return `captured: ${msg.from || '<>'} → ${msg.to.join(', ')} "${msg.subject}" (${relative(root, msg.file)})`;
}

/**
 * The SMTP door's environment in demo mode: the submission port, and the test certificate for
 * localhost (made for the tests, trusted by nobody else) unless RELAY_TLS_CERT/KEY name a pair.
 */
export function demoSmtpDoorEnv(root: string, env: Record<string, string | undefined>, submissionPortFree: boolean): Record<string, string> {
  const certs = join(root, 'libs', 'testkit', 'certs');
  return {
    RELAY_SMTP_PORT: env.RELAY_SMTP_PORT || String(submissionPortFree ? DEMO.submissionPort : 0),
    RELAY_TLS_CERT: env.RELAY_TLS_CERT || join(certs, 'server.pem'),
    RELAY_TLS_KEY: env.RELAY_TLS_KEY || join(certs, 'server-key.pem'),
  };
}

/** The CA of the demo's certificate, which the stack's clients (npm run send) trust. */
export function demoTlsCa(root: string): string {
  return join(root, 'libs', 'testkit', 'certs', 'ca.pem');
}

/** What the stack prints once everything is ready. */
export function readyBanner(opts: {
  address: string;
  demo: { captureDir: string; smtpPort?: number } | undefined;
  root: string;
  graceMs: number;
  /** The web console's address, and the demo's one-time sign-in link. */
  console?: { url: string; demoLink?: string | undefined };
}): string {
  const lines = ['', `Campus Relay is running. gRPC (relay.v1.MailService, relay.v1.AdminService): ${opts.address}`];
  if (opts.console) {
    lines.push(`Web console: ${opts.console.url}/`);
    if (opts.console.demoLink) {
      lines.push(`  Sign in as the demo admin with this one-time link (this machine only, within 15 minutes): ${opts.console.demoLink}`);
    }
  }
  if (opts.demo) {
    lines.push(
      `Demo mode (no RELAY_CONFIG): client "${DEMO.client}" with API key "${DEMO.apiKey}" sends as "${DEMO.sender}" <${DEMO.from}>;`,
      `  admin client "${DEMO.adminClient}" has key "${DEMO.adminApiKey}". Mail goes to a local capture SMTP server, never out.`,
      '',
      'Send a message from another terminal:',
      '  npm run send -- --to you@example.test --subject "Hello" --wait',
      `Captured mail is written to ${relative(opts.root, opts.demo.captureDir)}/ (one .eml file per message) and listed here.`,
    );
    if (opts.demo.smtpPort) {
      lines.push(
        '',
        `SMTP submission (STARTTLS, then AUTH PLAIN/LOGIN) on 127.0.0.1:${opts.demo.smtpPort}: user "${DEMO.smtpUser}", password "${DEMO.smtpPassword}".`,
        `  swaks --server 127.0.0.1:${opts.demo.smtpPort} --tls --auth-user ${DEMO.smtpUser} --auth-password ${DEMO.smtpPassword} --from ${DEMO.from} --to you@example.test`,
      );
    }
  } else {
    lines.push(
      '',
      'Send a message from another terminal:',
      '  RELAY_API_KEY=<a client key from your config> npm run send -- --sender <id> --to you@example.test --subject "Hello"',
    );
  }
  lines.push(`Stop with Ctrl-C (services get up to ${opts.graceMs / 1000} s, RELAY_SHUTDOWN_GRACE, to finish what they are sending).`, '');
  return lines.join('\n');
}
