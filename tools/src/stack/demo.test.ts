import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTransport } from 'nodemailer';
import { parseConfig } from '@relay/config';
import { afterEach, describe, expect, it } from 'vitest';
import { readSubject, startCaptureServer, type CapturedMessage, type CaptureServer } from './capture.js';
import { DEMO, demoMasterKey, demoSmtpDoorEnv, formatCaptured, readyBanner, writeDemoConfig } from './demo.js';
import { readStackFile, removeStackFile, stackFilePath, writeStackFile } from './stack-file.js';

const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
function tempRoot(): string {
  const d = mkdtempSync(join(tmpdir(), 'relay-demo-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('demo config', () => {
  it('is a valid relay.yaml with the demo client, an admin client and the demo sender', () => {
    const root = tempRoot();
    const path = writeDemoConfig(root, { host: '127.0.0.1', port: 2526 });
    expect(path).toBe(join(root, '.relay', 'demo-relay.yaml'));
    const config = parseConfig(readFileSync(path, 'utf8'), {}, path);
    expect(config.clients.map((c) => [c.name, c.apiKey!.reveal(), c.senders, c.admin])).toEqual([
      ['demo', DEMO.apiKey, ['demo'], false],
      ['demo-admin', DEMO.adminApiKey, ['demo'], true],
    ]);
    const [sender] = config.senders;
    expect(sender).toMatchObject({ id: 'demo', from: 'demo@relay.localhost', transport: 'smtp' });
    expect(sender?.smtp).toMatchObject({ host: '127.0.0.1', port: 2526, security: 'none', auth: { type: 'none' } });
  });

  it('lets the demo client submit over the SMTP door with its user and password', () => {
    const root = tempRoot();
    const config = parseConfig(readFileSync(writeDemoConfig(root, { host: '127.0.0.1', port: 2526 }), 'utf8'), {});
    const smtp = config.clients[0]!.smtp!;
    expect([smtp.username, smtp.password?.reveal()]).toEqual([DEMO.smtpUser, DEMO.smtpPassword]);
    expect(demoSmtpDoorEnv(root, {}, true)).toEqual({
      RELAY_SMTP_PORT: '2587',
      RELAY_TLS_CERT: join(root, 'libs', 'testkit', 'certs', 'server.pem'),
      RELAY_TLS_KEY: join(root, 'libs', 'testkit', 'certs', 'server-key.pem'),
    });
    expect(demoSmtpDoorEnv(root, {}, false).RELAY_SMTP_PORT).toBe('0');
    expect(demoSmtpDoorEnv(root, { RELAY_SMTP_PORT: '587', RELAY_TLS_CERT: '/c', RELAY_TLS_KEY: '/k' }, true)).toEqual({
      RELAY_SMTP_PORT: '587',
      RELAY_TLS_CERT: '/c',
      RELAY_TLS_KEY: '/k',
    });
  });

  it('keeps one master key of 32 bytes across runs', () => {
    const root = tempRoot();
    const key = demoMasterKey(root);
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    expect(demoMasterKey(root)).toBe(key);
    expect(statSync(join(root, '.relay', DEMO.masterKeyFile)).mode & 0o077).toBe(0);
  });

  it('prints how to send and where mail goes', () => {
    const root = tempRoot();
    const text = readyBanner({ address: '127.0.0.1:50051', demo: { captureDir: join(root, '.relay', 'captured') }, root, graceMs: 7_500 });
    expect(text).toContain('npm run send -- --to you@example.test --subject "Hello"');
    expect(text).toContain('.relay/captured/');
    expect(text).toContain('Stop with Ctrl-C (services get up to 7.5 s, RELAY_SHUTDOWN_GRACE, to finish what they are sending).');
    const withDoor = readyBanner({ address: '127.0.0.1:50051', demo: { captureDir: join(root, '.relay', 'captured'), smtpPort: 2587 }, root, graceMs: 7500 });
    const withConsole = readyBanner({
      address: '127.0.0.1:50051',
      demo: { captureDir: join(root, '.relay', 'captured') },
      root,
      graceMs: 7500,
      console: { url: 'https://localhost:8080', demoLink: 'https://localhost:8080/auth/demo?token=abc' },
    });
    expect(withConsole).toContain('Web console: https://localhost:8080/');
    expect(withConsole).toContain('one-time link (this machine only, within 15 minutes): https://localhost:8080/auth/demo?token=abc');
    expect(withDoor).toContain(
      'swaks --server 127.0.0.1:2587 --tls --auth-user demo --auth-password demo-smtp-password --from demo@relay.localhost --to you@example.test',
    );
  });
});

describe('stack file', () => {
  it('round-trips, and is absent after removal', () => {
    const root = tempRoot();
    expect(readStackFile(root)).toBeUndefined();
    writeStackFile(root, { address: '127.0.0.1:50051', apiKey: 'demo-key', sender: 'demo', captureDir: '/x' });
    expect(readStackFile(root)).toEqual({ address: '127.0.0.1:50051', apiKey: 'demo-key', sender: 'demo', captureDir: '/x' });
    removeStackFile(root);
    expect(readStackFile(root)).toBeUndefined();
  });

  it('names a broken file', () => {
    const root = tempRoot();
    writeStackFile(root, { address: '' });
    expect(() => readStackFile(root)).toThrow(`${stackFilePath(root)}: no "address"`);
  });
});

describe('capture server', () => {
  async function start(opts: { port?: number } = {}) {
    const root = tempRoot();
    const got: CapturedMessage[] = [];
    const server = await startCaptureServer({ dir: join(root, 'captured'), port: opts.port ?? 0, onMessage: (m) => got.push(m) });
    closers.push(() => server.close());
    return { root, server, got };
  }

  async function send(server: CaptureServer, subject: string) {
    const transport = createTransport({ host: server.host, port: server.port, secure: false, ignoreTLS: true });
    try {
      return await transport.sendMail({ from: 'demo@relay.localhost', to: ['a@example.test', 'b@example.test'], subject, text: 'hello' });
    } finally {
      transport.close();
    }
  }

  it('writes every message as an .eml file and reports envelope and subject', async () => {
    const { root, server, got } = await start();
    const info = await send(server, 'Grüße from the relay ✉');
    expect(info.accepted).toEqual(['a@example.test', 'b@example.test']);
    expect(got).toHaveLength(1);
    const [msg] = got;
    expect(msg).toMatchObject({ from: 'demo@relay.localhost', to: ['a@example.test', 'b@example.test'], subject: 'Grüße from the relay ✉' });
    expect(readFileSync(msg!.file, 'utf8')).toContain('hello');
    expect(formatCaptured(msg!, root)).toMatch(
      /^captured: demo@relay\.localhost → a@example\.test, b@example\.test "Grüße from the relay ✉" \(captured\/.+\.eml\)$/,
    );
  });

  it('takes any free port when the asked one is busy', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const busy = (blocker.address() as { port: number }).port;
    const { server, got } = await start({ port: busy });
    expect(server.port).not.toBe(busy);
    await send(server, 'still works');
    expect(got[0]?.subject).toBe('still works');
    await server.close();
    await server.close();
  });
});

describe('readSubject', () => {
  it('unfolds and decodes encoded words, split characters included', () => {
    expect(readSubject('From: a@b\r\nSubject: plain\r\n\r\nSubject: body')).toBe('plain');
    expect(readSubject('Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n =?UTF-8?B?IOKciQ==?=\r\n\r\n')).toBe('Grüße ✉');
    // "ü" is C3 BC, split across two words.
    expect(readSubject('Subject: =?utf-8?Q?=C3?= =?utf-8?Q?=BC?=\n\n')).toBe('ü');
    expect(readSubject('To: x\r\n\r\n')).toBe('');
  });
});
