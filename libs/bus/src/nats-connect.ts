import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator } from '@nats-io/nats-core';
import type { NodeConnectionOptions } from '@nats-io/transport-node';
import { ConfigError, type NatsAuth } from '@relay/core';
import { inboxPrefixFor, type ServiceKind } from './nats-auth.js';
import type { BusOptions } from './bus.js';

/** How a service proves itself to NATS and the TLS files it uses (RelayEnv's `nats`). */
export type NatsAuthOptions = NatsAuth;

export function hasCredentials(a: NatsAuthOptions | undefined): boolean {
  return Boolean(a && (a.credsFile || a.user || a.nkeySeedFile));
}

/** The nats.js connection options for `a`. */
export function natsConnectOptions(a: NatsAuthOptions | undefined): Partial<NodeConnectionOptions> {
  if (!a) return {};
  const o: Partial<NodeConnectionOptions> = {};
  if (a.credsFile) o.authenticator = credsAuthenticator(readSecret('NATS_CREDS', a.credsFile));
  else if (a.nkeySeedFile)
    o.authenticator = nkeyAuthenticator(new TextEncoder().encode(new TextDecoder().decode(readSecret('NATS_NKEY_SEED_FILE', a.nkeySeedFile)).trim()));
  else if (a.user) Object.assign(o, { user: a.user, pass: a.password ?? '' });
  if (a.tlsCa || a.tlsCert) o.tls = { ...(a.tlsCa ? { caFile: a.tlsCa } : {}), ...(a.tlsCert ? { certFile: a.tlsCert, keyFile: a.tlsKey } : {}) };
  return o;
}

function readSecret(name: string, path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${name}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** The settings a service's environment gives; structurally the config library's RelayEnv. */
export interface BusEnv {
  natsUrl: string;
  busPrefix: string;
  streamReplicas: number;
  nats: NatsAuthOptions;
}

/** A service's bus options: its connection name, its credentials and its own inbox. */
export function serviceBusOptions(env: BusEnv, kind: ServiceKind, log?: BusOptions['log']): BusOptions {
  return {
    servers: env.natsUrl,
    prefix: env.busPrefix,
    name: `relay-${kind}:${process.pid}`,
    topology: { replicas: env.streamReplicas },
    auth: env.nats,
    inboxPrefix: inboxPrefixFor(kind),
    log,
  };
}
