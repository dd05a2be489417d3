/**
 * deploy/: the Dockerfile, compose.yaml and the Kubernetes manifests, checked by parsing (no
 * cluster or engine here; .ci/containers.sh builds and runs the image and validates compose.yaml
 * with docker-compose).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readEnv } from '@relay/config';
import { SERVICE_NAMES } from '@relay/core';
import { repoRoot } from '@relay/testkit';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

const deploy = join(repoRoot, 'deploy');
const SERVICES = SERVICE_NAMES;
const SENDERS = ['smtp-sender', 'graph-sender'];

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, checked field by field.
type Doc = Record<string, any>;

function manifests(): Doc[] {
  const dir = join(deploy, 'kubernetes');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d): Doc => {
        expect(d.errors, f).toEqual([]);
        return { ...(d.toJS() as Doc), file: f };
      }),
    )
    .filter((d) => d.kind);
}

const find = (docs: Doc[], kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata?.name === name);

/** The Secrets a workload reads: by environment variables, volumes and projected volumes. */
function secretsOf(d: Doc): string[] {
  const spec = d.spec.template.spec;
  const names = new Set<string>();
  for (const c of spec.containers) for (const e of c.env ?? []) if (e.valueFrom?.secretKeyRef) names.add(e.valueFrom.secretKeyRef.name);
  for (const c of spec.containers) for (const e of c.envFrom ?? []) if (e.secretRef) names.add(e.secretRef.name);
  for (const v of spec.volumes ?? []) {
    if (v.secret) names.add(v.secret.secretName);
    for (const src of v.projected?.sources ?? []) if (src.secret) names.add(src.secret.name);
  }
  return [...names].sort();
}

/** kustomization.yaml's secretGenerator: Secret name → the keys (file names) it holds. */
function generatedSecrets(): Record<string, string[]> {
  const kustomization = parse(readFileSync(join(deploy, 'kubernetes', 'kustomization.yaml'), 'utf8')) as Doc;
  return Object.fromEntries(kustomization.secretGenerator.map((g: Doc) => [g.name, g.files.map((f: string) => f.split('/').pop())]));
}

describe('deploy/kubernetes', () => {
  const docs = manifests();

  it('has well-formed objects with unique kind/name, all listed in kustomization.yaml', () => {
    const kustomization = parse(readFileSync(join(deploy, 'kubernetes', 'kustomization.yaml'), 'utf8')) as Doc;
    const files = new Set(docs.map((d) => d.file));
    expect(new Set(kustomization.resources)).toEqual(files);
    const keys = docs.map((d) => `${d.kind}/${d.metadata?.name}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const d of docs) {
      expect(d.apiVersion, d.file).toMatch(/^([a-z0-9.]+\/)?v\d/);
      expect(d.metadata?.name, d.file).toMatch(/^[a-z0-9-]+$/);
    }
  });

  it.each(SERVICES)('%s: a Deployment of the image with probes on /healthz and /readyz of RELAY_METRICS_PORT, and a PDB', (name) => {
    const dep = find(docs, 'Deployment', name);
    expect(dep).toBeDefined();
    const labels = dep!.spec.selector.matchLabels;
    expect(dep!.spec.template.metadata.labels).toMatchObject(labels);
    const [c] = dep!.spec.template.spec.containers;
    expect(c.image).toBe('campus-relay');
    expect(c.args).toEqual([name]);
    const env = find(docs, 'ConfigMap', 'relay-env')!.data;
    const metrics = c.ports.find((p: Doc) => p.name === 'metrics');
    expect(String(metrics.containerPort)).toBe(env.RELAY_METRICS_PORT);
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(dep!.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    // The master key comes from credentials' own Secret, never from the ConfigMap, and only credentials has it.
    const master = c.env?.find((e: Doc) => e.name === 'RELAY_MASTER_KEY');
    if (name === 'credentials') expect(master.valueFrom.secretKeyRef.name).toBe('relay-credentials-secrets');
    else expect(master).toBeUndefined();
    expect(env.RELAY_MASTER_KEY).toBeUndefined();
    expect(dep!.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
    expect(find(docs, 'PodDisruptionBudget', name)?.spec.selector.matchLabels).toEqual(labels);
  });

  it.each(SENDERS)('%s: scaled by an HPA', (name) => {
    const hpa = find(docs, 'HorizontalPodAutoscaler', name);
    expect(hpa?.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name });
    expect(hpa!.spec.maxReplicas).toBeGreaterThan(hpa!.spec.minReplicas);
  });

  it('mounts relay.yaml from the ConfigMap, and each secret only into the service that reads it', () => {
    const config = find(docs, 'ConfigMap', 'relay-config')!;
    const relay = parse(config.data['relay.yaml']) as Doc;
    expect(relay.clients.length).toBeGreaterThan(0);
    expect(find(docs, 'ConfigMap', 'relay-env')!.data.RELAY_CONFIG).toBe('/etc/relay/relay.yaml');
    expect(Object.fromEntries(SERVICES.map((n) => [n, secretsOf(find(docs, 'Deployment', n)!)]))).toEqual({
      credentials: ['relay-credentials-secrets', 'relay-ingest-token', 'relay-internal-token', 'relay-nats-credentials'],
      ingest: ['relay-console-session-key', 'relay-envelope-key', 'relay-ingest-secrets', 'relay-ingest-token', 'relay-nats-ingest'],
      scheduler: ['relay-nats-scheduler'],
      'smtp-sender': ['relay-envelope-key', 'relay-internal-token', 'relay-nats-smtp-sender'],
      'graph-sender': ['relay-envelope-key', 'relay-internal-token', 'relay-nats-graph-sender'],
    });
    // Callers' API keys reach ingest, the senders' secrets credentials: each from a file of its own Secret.
    const generated = generatedSecrets();
    const fileRefs = (part: unknown) => JSON.stringify(part).match(/file:\/run\/secrets\/relay\/[\w-]+/g) ?? [];
    for (const ref of fileRefs(relay.clients)) expect(generated['relay-ingest-secrets']).toContain(ref.split('/').pop());
    for (const ref of fileRefs(relay.senders)) expect(generated['relay-credentials-secrets']).toContain(ref.split('/').pop());
    expect(generated['relay-credentials-secrets']).toContain('master-key');
    // Ingest presents a token of its own, which fetches no sender's secret.
    const tokenFile = (name: string, variable: string) =>
      find(docs, 'Deployment', name)!.spec.template.spec.containers[0].env?.find((e: Doc) => e.name === variable)?.value;
    expect(Object.fromEntries(SERVICES.map((n) => [n, tokenFile(n, 'RELAY_INTERNAL_TOKEN_FILE')]))).toEqual({
      credentials: '/run/secrets/relay/internal-token',
      ingest: '/run/secrets/relay/ingest-token',
      scheduler: undefined,
      'smtp-sender': '/run/secrets/relay/internal-token',
      'graph-sender': '/run/secrets/relay/internal-token',
    });
    expect(tokenFile('credentials', 'RELAY_INTERNAL_ADMIN_TOKEN_FILE')).toBe('/run/secrets/relay/ingest-token');
    expect(generated['relay-ingest-token']).toEqual(['ingest-token']);
    expect(generated['relay-internal-token']).toEqual(['internal-token']);
  });

  it('gives every ingest replica the same console cookie key, from a Secret of its own', () => {
    const ingest = find(docs, 'Deployment', 'ingest')!;
    expect(ingest.spec.replicas).toBeGreaterThan(1);
    const env = ingest.spec.template.spec.containers[0].env as Doc[];
    const key = env.filter((e) => e.name === 'RELAY_CONSOLE_SESSION_KEY');
    expect(key).toEqual([
      { name: 'RELAY_CONSOLE_SESSION_KEY', valueFrom: { secretKeyRef: { name: 'relay-console-session-key', key: 'console-session-key' } } },
    ]);
    expect(generatedSecrets()['relay-console-session-key']).toEqual(['console-session-key']);
    // No other workload holds it.
    const holders = docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet').filter((d) => secretsOf(d).includes('relay-console-session-key'));
    expect(holders.map((d) => d.metadata.name)).toEqual(['ingest']);
    // The variable is the one ingest reads.
    const secret = Buffer.alloc(32, 7);
    expect(readEnv({ RELAY_CONSOLE_SESSION_KEY: secret.toString('base64') }).consoleSessionKey).toEqual(secret);
  });

  it('has no placeholder secret: Secrets are generated from files the operator writes', () => {
    expect(docs.filter((d) => d.kind === 'Secret')).toEqual([]);
    const kustomization = parse(readFileSync(join(deploy, 'kubernetes', 'kustomization.yaml'), 'utf8')) as Doc;
    for (const g of kustomization.secretGenerator) {
      expect(g.literals, g.name).toBeUndefined();
      expect(g.envs, g.name).toBeUndefined();
      // From secrets/ (written by the operator) or nats-auth/ (written by npm run nats-auth).
      for (const f of g.files) expect(f, g.name).toMatch(/^(secrets\/[\w-]+|[\w-]+=nats-auth\/[\w.-]+)$/);
    }
    expect(readFileSync(join(deploy, 'kubernetes', 'secrets', '.gitignore'), 'utf8')).toMatch(/^\*$/m);
  });

  it('gives no pod a service account token, and runs every container (NATS and Redis too) locked down', () => {
    const pods = docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet');
    expect(pods.map((d) => d.metadata.name).sort()).toEqual([...SERVICES, 'nats', 'redis'].sort());
    for (const d of pods) {
      const spec = d.spec.template.spec;
      expect(spec.automountServiceAccountToken, d.metadata.name).toBe(false);
      expect(spec.securityContext.runAsNonRoot, d.metadata.name).toBe(true);
      expect(spec.securityContext.seccompProfile, d.metadata.name).toEqual({ type: 'RuntimeDefault' });
      for (const c of spec.containers) {
        expect(c.securityContext, `${d.metadata.name}/${c.name}`).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
      }
    }
  });

  it('lets only ingest (gRPC, and HTTP for the console and OAuth callback) be reached from outside the namespace; NATS and Redis only from the relay', () => {
    const policies = docs.filter((d) => d.kind === 'NetworkPolicy');
    const deny = policies.find((p) => Object.keys(p.spec.podSelector).length === 0);
    expect(deny?.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress'] });
    const relayPods = [...SERVICES].sort();
    const rules = policies.flatMap((p) =>
      (p.spec.ingress ?? []).map((r: Doc) => ({ pod: p.spec.podSelector.matchLabels?.['app.kubernetes.io/name'], rule: r })),
    );
    // A rule without `from` admits anyone, in or out of the cluster.
    const open = rules.filter((r) => !r.rule.from).map((r) => `${r.pod}:${r.rule.ports.map((p: Doc) => p.port).join(',')}`);
    expect(open.sort()).toEqual(['ingest:50051', 'ingest:8080']);
    for (const r of rules.filter((r) => r.rule.from)) {
      for (const peer of r.rule.from) {
        // Pods of this namespace only: no namespaceSelector, no ipBlock.
        expect(Object.keys(peer), r.pod).toEqual(['podSelector']);
      }
    }
    const sources = (pod: string, port: number) =>
      rules
        .filter((r) => r.pod === pod && r.rule.ports.some((p: Doc) => p.port === port))
        .flatMap((r) => r.rule.from.flatMap((f: Doc) => f.podSelector.matchExpressions?.[0]?.values ?? [f.podSelector.matchLabels['app.kubernetes.io/name']]))
        .sort();
    expect(sources('nats', 4222)).toEqual(relayPods);
    expect(sources('nats', 6222)).toEqual(['nats']);
    expect(sources('redis', 6379)).toEqual(relayPods);
    expect(sources('credentials', 50052)).toEqual(['graph-sender', 'ingest', 'smtp-sender']);
  });

  it.each(SERVICES)('%s: NATS as its own user, from a Secret of its own; the envelope key only for ingest and the senders', (name) => {
    const spec = find(docs, 'Deployment', name)!.spec.template.spec;
    const [c] = spec.containers;
    const envOf = (n: string) => c.env.find((e: Doc) => e.name === n)?.value;
    const mountOf = (vol: string) => c.volumeMounts.find((m: Doc) => m.name === vol)?.mountPath;
    expect(envOf('NATS_NKEY_SEED_FILE')).toBe(`${mountOf('nats-user')}/seed`);
    expect(spec.volumes.find((v: Doc) => v.name === 'nats-user').secret.secretName).toBe(`relay-nats-${name}`);
    const holder = ['ingest', ...SENDERS].includes(name);
    expect(Boolean(envOf('RELAY_ENVELOPE_KEY_FILE')), 'RELAY_ENVELOPE_KEY_FILE').toBe(holder);
    expect(spec.volumes.some((v: Doc) => v.secret?.secretName === 'relay-envelope-key')).toBe(holder);
    if (holder) expect(envOf('RELAY_ENVELOPE_KEY_FILE')).toBe(`${mountOf('envelope-key')}/envelope-key`);
    const kustomization = parse(readFileSync(join(deploy, 'kubernetes', 'kustomization.yaml'), 'utf8')) as Doc;
    const gen = kustomization.secretGenerator.find((g: Doc) => g.name === `relay-nats-${name}`);
    expect(gen.files).toEqual([`seed=nats-auth/${name}.nk`]);
  });

  it("admits only the relay's NATS users: the server includes the generated users (public keys only)", () => {
    const sts = find(docs, 'StatefulSet', 'nats')!;
    const conf: string = find(docs, 'ConfigMap', 'nats-config')!.data['nats.conf'];
    const include = /^\s*include (\S+)$/m.exec(conf)?.[1];
    const mount = sts.spec.template.spec.containers[0].volumeMounts.find((m: Doc) => m.name === 'users').mountPath;
    expect(join('/etc/nats', include!)).toBe(join(mount, 'users.conf'));
    expect(sts.spec.template.spec.volumes.find((v: Doc) => v.name === 'users').configMap.name).toBe('nats-users');
    const kustomization = parse(readFileSync(join(deploy, 'kubernetes', 'kustomization.yaml'), 'utf8')) as Doc;
    expect(kustomization.configMapGenerator).toEqual([{ name: 'nats-users', files: ['users.conf=nats-auth/users.conf'] }]);
    expect(kustomization.secretGenerator.find((g: Doc) => g.name === 'relay-envelope-key').files).toEqual(['envelope-key=nats-auth/envelope-key']);
  });

  it('runs NATS as a 3-server JetStream cluster with a volume each, streams replicated 3 times', () => {
    const sts = find(docs, 'StatefulSet', 'nats')!;
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    const conf: string = find(docs, 'ConfigMap', 'nats-config')!.data['nats.conf'];
    expect(conf).toMatch(/jetstream\s*\{[^}]*store_dir: \/data/);
    expect(conf.match(/nats:\/\/nats-\d\.nats-headless:6222/g)).toHaveLength(3);
    expect(find(docs, 'PodDisruptionBudget', 'nats')?.spec.maxUnavailable).toBe(1);
    expect(find(docs, 'ConfigMap', 'relay-env')!.data.RELAY_JS_REPLICAS).toBe('3');
  });
});

describe('deploy/compose.yaml', () => {
  const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as Doc;

  it('runs the five services from one image, NATS with JetStream on a volume, Redis and a collector', () => {
    for (const name of SERVICES) {
      const s = compose.services[name];
      expect(s.command, name).toEqual([name]);
      expect(s.image, name).toBe('${RELAY_IMAGE:-campus-relay:latest}');
    }
    expect(compose.services.nats.command).toEqual(['-c', '/etc/nats/nats.conf']);
    expect(readFileSync(join(deploy, 'nats.conf'), 'utf8')).toMatch(/jetstream\s*\{\s*store_dir: \/data\s*\}/);
    expect(compose.services.nats.volumes).toContain('nats-data:/data');
    expect(Object.keys(compose.volumes)).toContain('nats-data');
    expect(compose.services.redis).toBeDefined();
    expect(compose.services['otel-collector']).toBeDefined();
  });

  it('lets senders scale (no fixed host ports) and gives each service only its own secrets', () => {
    for (const name of ['scheduler', ...SENDERS]) expect(compose.services[name].ports, name).toBeUndefined();
    for (const name of SERVICES) {
      const env = compose.services[name].environment as Record<string, string>;
      if (name === 'credentials') expect(env.RELAY_MASTER_KEY).toMatch(/^\$\{RELAY_MASTER_KEY:\?/);
      else expect(env.RELAY_MASTER_KEY, name).toBeUndefined();
      if (name !== 'scheduler') expect(env.RELAY_INTERNAL_TOKEN_FILE, name).toBe(`/run/secrets/${name === 'ingest' ? 'ingest-token' : 'internal-token'}`);
    }
    expect(compose.services.credentials.environment.RELAY_INTERNAL_ADMIN_TOKEN_FILE).toBe('/run/secrets/ingest-token');
    expect(Object.fromEntries(SERVICES.map((n) => [n, [...(compose.services[n].secrets ?? [])].sort()]))).toEqual({
      credentials: ['ingest-token', 'internal-token', 'nats-credentials', 'noreply-password'],
      ingest: ['billing-api-key', 'envelope-key', 'ingest-token', 'nats-ingest', 'ops-api-key'],
      scheduler: ['nats-scheduler'],
      'smtp-sender': ['envelope-key', 'internal-token', 'nats-smtp-sender'],
      'graph-sender': ['envelope-key', 'internal-token', 'nats-graph-sender'],
    });
    for (const s of Object.values(compose.secrets as Record<string, Doc>)) expect(s.file).toMatch(/^\$\{RELAY_SECRETS_DIR:-\.\/secrets\}\//);
  });

  it('gives each service its own NATS user and the envelope key to ingest and the senders only; NATS includes the users', () => {
    for (const name of SERVICES) {
      const s = compose.services[name];
      const env = s.environment as Record<string, string>;
      expect(env.NATS_NKEY_SEED_FILE).toBe(`/run/secrets/nats-${name}`);
      expect(s.secrets.filter((n: string) => n.startsWith('nats-'))).toEqual([`nats-${name}`]);
      expect(compose.secrets[`nats-${name}`].file).toBe(`\${RELAY_SECRETS_DIR:-./secrets}/nats/${name}.nk`);
      const holder = ['ingest', ...SENDERS].includes(name);
      expect(s.secrets.includes('envelope-key'), name).toBe(holder);
      expect(env.RELAY_ENVELOPE_KEY_FILE, name).toBe(holder ? '/run/secrets/envelope-key' : undefined);
    }
    expect(readFileSync(join(deploy, 'nats.conf'), 'utf8')).toMatch(/^include \.\/users\.conf$/m);
    expect(compose.services.nats.volumes).toContain('${RELAY_SECRETS_DIR:-./secrets}/nats/users.conf:/etc/nats/users.conf:ro');
  });

  it('runs every container read-only, without capabilities or privilege gain', () => {
    for (const [name, s] of Object.entries(compose.services as Record<string, Doc>)) {
      expect(s.read_only, name).toBe(true);
      expect(s.cap_drop, name).toEqual(['ALL']);
      expect(s.security_opt, name).toContain('no-new-privileges:true');
    }
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = readFileSync(join(deploy, 'Dockerfile'), 'utf8');

  it('is one Node 24 image for every service: non-root, with a health check, no secrets baked in', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24-slim$/m);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\n?.*\/healthz/m);
    expect(dockerfile).toMatch(
      /^ENTRYPOINT \["node", "--max-semi-space-size=16", "--import", "\/app\/libs\/telemetry\/dist\/register.js", "\/app\/relay.mjs"\]$/m,
    );
    const instructions = dockerfile.split('\n').filter((l) => !l.startsWith('#'));
    expect(instructions.join('\n')).not.toMatch(/RELAY_MASTER_KEY|secrets\//);
  });

  it('relay.mjs takes the list of services from @relay/core and names them all on a wrong argument', () => {
    const entry = readFileSync(join(deploy, 'relay.mjs'), 'utf8');
    for (const name of SERVICES) expect(entry).not.toContain(`'${name}'`);
    const run = spawnSync(process.execPath, [join(deploy, 'relay.mjs'), 'nope'], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`usage: <image> ${SERVICES.join(' | ')}\nunknown service: nope`);
  });
});

describe('internal ports in containers', () => {
  it('are opened by RELAY_INTERNAL_HOST in compose and Kubernetes, since they default to loopback', () => {
    const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as Doc;
    for (const name of SERVICES) expect((compose.services[name].environment as Record<string, string>).RELAY_INTERNAL_HOST, name).toBe('0.0.0.0');
    expect(find(manifests(), 'ConfigMap', 'relay-env')!.data.RELAY_INTERNAL_HOST).toBe('0.0.0.0');
  });
});
