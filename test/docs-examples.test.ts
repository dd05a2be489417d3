import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromJson, type JsonValue } from '@bufbuild/protobuf';
import { parseConfig } from '@relay/config';
import { AdminService, MailService } from '@relay/proto';
import { makeAppCertificate, repoRoot, testCa, type AppCertificate } from '@relay/testkit';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';

// The configuration and the grpcurl calls the documentation shows go through the real loader and
// the real message schemas, so a renamed key or field fails here instead of at a reader's desk.

const docFiles = [
  'README.md',
  ...['docs', 'docs/providers'].flatMap((d) =>
    readdirSync(join(repoRoot, d))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `${d}/${f}`),
  ),
];
const exampleFiles = [
  'deploy/relay.example.yaml',
  ...readdirSync(join(repoRoot, 'docs', 'examples'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `docs/examples/${f}`),
];

/** Fenced blocks of one language in a Markdown file, with the line each starts on. */
function fencedBlocks(file: string, lang: string): Array<{ line: number; text: string }> {
  const lines = readFileSync(join(repoRoot, file), 'utf8').split('\n');
  const blocks: Array<{ line: number; text: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== `\`\`\`${lang}`) continue;
    const start = i + 1;
    while (++i < lines.length && lines[i]!.trim() !== '```');
    blocks.push({ line: start, text: lines.slice(start, i).join('\n') });
  }
  return blocks;
}

const dir = mkdtempSync(join(tmpdir(), 'relay-docs-'));
let appCert: AppCertificate | undefined;
const appCertificate = () => (appCert ??= makeAppCertificate());
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  appCert?.remove();
});
let made = 0;

/**
 * Loads a relay.yaml document with the real loader: every `env:` name gets a value of its own,
 * every `file:` secret and `ca_file` a file that exists, so each secret is resolved as in a service.
 */
function load(doc: unknown, source: string) {
  const env: Record<string, string> = {};
  const secret = (ref: string) => `${ref.replace(/[^A-Za-z0-9]/g, '').padEnd(40, 'x')}-${made++}`;
  const walk = (v: unknown, key?: string): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    if (typeof v !== 'string') return v;
    if (key === 'ca_file') return testCa().caFile;
    // An Entra app certificate and its key: a pair made for the test run, valid for a month.
    if (key === 'certificate_file') return appCertificate().certFile;
    if (key === 'private_key_file') return appCertificate().keyFile;
    // A private key given as a secret (a Google service account's): an RSA key in PEM.
    if (key === 'private_key' && (v.startsWith('env:') || v.startsWith('file:'))) {
      const path = join(dir, `key-${made++}.pem`);
      writeFileSync(path, readFileSync(appCertificate().keyFile));
      return `file:${path}`;
    }
    // A Google service account's JSON key file, as the Cloud console hands it out.
    if (key === 'service_account_file') {
      const path = join(dir, `service-account-${made++}.json`);
      const privateKey = readFileSync(appCertificate().keyFile, 'utf8');
      writeFileSync(
        path,
        JSON.stringify({ type: 'service_account', client_email: 'docs@example.iam.gserviceaccount.com', client_id: '1', private_key: privateKey }),
      );
      return path;
    }
    if (v.startsWith('env:')) {
      // A webhook's secret has a format of its own (whsec_ and base64).
      env[v.slice(4)] ??= key === 'secret' ? `whsec_${Buffer.from(secret(v)).toString('base64')}` : secret(v);
      return v;
    }
    if (v.startsWith('file:')) {
      const path = join(dir, `secret-${made}`);
      writeFileSync(path, secret(v));
      return `file:${path}`;
    }
    return v;
  };
  return parseConfig(stringify(walk(doc)), env, source);
}

type Doc = { clients?: Array<{ senders?: string[] }>; senders?: Array<{ id: string }> } & Record<string, unknown>;

/**
 * A README or docs block is often a part of relay.yaml (a list of senders, a `limits:` section, the
 * clients alone): the parts it leaves out are filled with the smallest valid ones.
 */
function complete(block: unknown): Doc {
  const doc: Doc = Array.isArray(block) ? { senders: block as Doc['senders'] } : { ...(block as Doc) };
  const senders = [...(doc.senders ?? [])];
  const ids = new Set(senders.map((s) => s.id));
  for (const id of (doc.clients ?? []).flatMap((c) => c.senders ?? [])) {
    if (ids.has(id)) continue;
    ids.add(id);
    senders.push({ id, from: `${id}@campus.example`, transport: 'smtp', smtp: { host: 'smtp.campus.example', port: 587, security: 'starttls' } } as never);
  }
  if (senders.length === 0)
    senders.push({
      id: 'no-reply',
      from: 'no-reply@campus.example',
      transport: 'smtp',
      smtp: { host: 'smtp.campus.example', port: 587, security: 'starttls' },
    } as never);
  return { ...doc, senders, clients: doc.clients ?? [{ name: 'docs-reader', api_key: 'env:DOCS_READER_KEY', senders: [...ids] } as never] };
}

describe('configuration examples load with the real loader', () => {
  it.each(exampleFiles)('%s', (file) => {
    const cfg = load(parseYaml(readFileSync(join(repoRoot, file), 'utf8')), file);
    expect(cfg.senders.length).toBeGreaterThan(0);
  });

  it('deploy/relay.example.yaml has an admin client besides the callers', () => {
    const cfg = load(parseYaml(readFileSync(join(repoRoot, 'deploy/relay.example.yaml'), 'utf8')), 'relay.example.yaml');
    expect(cfg.clients.filter((c) => c.admin).map((c) => c.senders)).toEqual([[]]);
    expect(cfg.clients.some((c) => !c.admin && c.senders.length > 0)).toBe(true);
  });

  it('the relay.yaml in the Kubernetes ConfigMap', () => {
    const docs = parseAllDocuments(readFileSync(join(repoRoot, 'deploy/kubernetes/config.yaml'), 'utf8')).map(
      (d) => d.toJS() as { metadata?: { name?: string }; data?: Record<string, string> },
    );
    const text = docs.find((d) => d.metadata?.name === 'relay-config')?.data?.['relay.yaml'];
    expect(text).toBeDefined();
    expect(load(parseYaml(text!), 'deploy/kubernetes/config.yaml').clients.length).toBeGreaterThan(0);
  });

  // A block with an elided part (a line of its own reading `...`) is an excerpt and cannot load.
  const blocks = docFiles.flatMap((file) =>
    fencedBlocks(file, 'yaml')
      .filter((b) => !/^\s*\.\.\.\s*$/m.test(b.text))
      .map((b) => ({ where: `${file}:${b.line}`, text: b.text })),
  );
  it('finds the yaml blocks of the README and docs/', () => {
    expect(blocks.filter((b) => b.where.startsWith('README.md')).length).toBeGreaterThanOrEqual(3);
  });
  it.each(blocks)('$where', ({ where, text }) => {
    expect(() => load(complete(parseYaml(text)), where)).not.toThrow();
  });
});

/** grpcurl command lines (continuations joined) from the shell blocks of the README and docs/. */
function grpcurlCalls(): Array<{ where: string; command: string }> {
  return docFiles.flatMap((file) =>
    ['sh', 'bash', 'console'].flatMap((lang) =>
      fencedBlocks(file, lang).flatMap((b) =>
        b.text
          .replace(/\\\n\s*/g, ' ')
          .split('\n')
          .filter((l) => /^\s*(\$\s*)?grpcurl\s/.test(l))
          .map((command) => ({ where: `${file}:${b.line}`, command })),
      ),
    ),
  );
}

describe('grpcurl examples match the proto', () => {
  const services = { 'relay.v1.MailService': MailService, 'relay.v1.AdminService': AdminService } as const;
  const calls = grpcurlCalls().filter((c) => /relay\.v1\.\w+\/\w+/.test(c.command));

  it('finds the grpcurl examples', () => {
    expect(calls.length).toBeGreaterThanOrEqual(4);
  });

  it.each(calls)('$where: $command', ({ command }) => {
    const [, service, method] = /(relay\.v1\.\w+)\/(\w+)/.exec(command)!;
    const svc = services[service as keyof typeof services];
    expect(svc, `${service} is not a service of proto/relay/v1/mail.proto`).toBeDefined();
    const m = svc.methods.find((x) => x.name === method);
    expect(m, `${service} has no method ${method}`).toBeDefined();
    // Ingest serves reflection: a call may name the proto file, which must then exist.
    const importPath = /-import-path\s+(\S+)/.exec(command)?.[1];
    const proto = /-proto\s+(\S+)/.exec(command)?.[1];
    if (proto !== undefined) expect(existsSync(join(repoRoot, importPath ?? '.', proto))).toBe(true);
    const body = /-d\s+'([^']*)'/.exec(command)?.[1];
    if (body !== undefined) expect(() => fromJson(m!.input, JSON.parse(body) as JsonValue)).not.toThrow();
  });
});
