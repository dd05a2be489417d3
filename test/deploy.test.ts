/**
 * deploy/: the Dockerfile, compose.yaml and the Kubernetes manifests, checked by parsing (no
 * cluster or engine here; .ci/containers.sh builds and runs the image and validates compose.yaml
 * with docker-compose).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '@relay/testkit';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

const deploy = join(repoRoot, 'deploy');
const SERVICES = ['ingest', 'scheduler', 'smtp-sender', 'graph-sender', 'credentials'];
const SENDERS = ['smtp-sender', 'graph-sender'];

type Doc = Record<string, any>; // parsed YAML, checked field by field

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

describe('deploy/kubernetes', () => {
  const docs = manifests();

  it('has well-formed objects with unique kind/name, all listed in kustomization.yaml', () => {
    const kustomization = parse(readFileSync(join(deploy, 'kubernetes', 'kustomization.yaml'), 'utf8')) as Doc;
    const files = new Set(docs.map((d) => d.file));
    expect(new Set(kustomization.resources)).toEqual(files);
    const keys = docs.map((d) => `${d.kind}/${d.metadata?.name}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const d of docs) {
      expect(d.apiVersion, d.file).toMatch(/^([a-z.]+\/)?v\d/);
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
    // The master key comes from the Secret, never from the ConfigMap.
    expect(c.env.find((e: Doc) => e.name === 'RELAY_MASTER_KEY').valueFrom.secretKeyRef.name).toBe('relay-secrets');
    expect(env.RELAY_MASTER_KEY).toBeUndefined();
    expect(dep!.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
    expect(find(docs, 'PodDisruptionBudget', name)?.spec.selector.matchLabels).toEqual(labels);
  });

  it.each(SENDERS)('%s: scaled by an HPA', (name) => {
    const hpa = find(docs, 'HorizontalPodAutoscaler', name);
    expect(hpa?.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name });
    expect(hpa!.spec.maxReplicas).toBeGreaterThan(hpa!.spec.minReplicas);
  });

  it('mounts relay.yaml from the ConfigMap and the keys from the Secret', () => {
    const config = find(docs, 'ConfigMap', 'relay-config')!;
    const relay = parse(config.data['relay.yaml']) as Doc;
    expect(relay.clients.length).toBeGreaterThan(0);
    const secret = find(docs, 'Secret', 'relay-secrets')!;
    const keys = Object.keys(secret.stringData);
    for (const ref of config.data['relay.yaml'].match(/file:\/run\/secrets\/relay\/[\w-]+/g) ?? []) {
      expect(keys).toContain(ref.split('/').pop());
    }
    expect(find(docs, 'ConfigMap', 'relay-env')!.data.RELAY_CONFIG).toBe('/etc/relay/relay.yaml');
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

  it('admits only the relay\'s NATS users: the server includes the generated users (public keys only)', () => {
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

  it('lets senders scale (no fixed host ports) and takes secrets from files or the environment', () => {
    for (const name of ['scheduler', ...SENDERS]) expect(compose.services[name].ports, name).toBeUndefined();
    for (const name of SERVICES) {
      const env = compose.services[name].environment as Record<string, string>;
      expect(env.RELAY_MASTER_KEY).toMatch(/^\$\{RELAY_MASTER_KEY:\?/);
      expect(compose.services[name].secrets.length).toBeGreaterThan(0);
    }
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
});

describe('deploy/Dockerfile', () => {
  const dockerfile = readFileSync(join(deploy, 'Dockerfile'), 'utf8');

  it('is one Node 24 image for every service: non-root, with a health check, no secrets baked in', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24-slim$/m);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\n?.*\/healthz/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "--max-semi-space-size=16", "--import", "\/app\/libs\/telemetry\/dist\/register.js", "\/app\/relay.mjs"\]$/m);
    const instructions = dockerfile.split('\n').filter((l) => !l.startsWith('#'));
    expect(instructions.join('\n')).not.toMatch(/RELAY_MASTER_KEY|secrets\//);
    const entry = readFileSync(join(deploy, 'relay.mjs'), 'utf8');
    for (const name of SERVICES) expect(entry).toContain(`'${name}'`);
  });
});

describe('internal ports in containers', () => {
  it('are opened by RELAY_INTERNAL_HOST in compose and Kubernetes, since they default to loopback', () => {
    const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as Doc;
    for (const name of SERVICES) expect((compose.services[name].environment as Record<string, string>).RELAY_INTERNAL_HOST, name).toBe('0.0.0.0');
    expect(find(manifests(), 'ConfigMap', 'relay-env')!.data.RELAY_INTERNAL_HOST).toBe('0.0.0.0');
  });
});
