import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Kvm, type KV } from '@nats-io/kv';
import { secretsBucketName, type Bus } from '@relay/bus';
import { CredentialStatusSchema, type CredentialStatus } from '@relay/proto';
import { SECRETS_HISTORY } from './secret-store.js';

/**
 * Facts about a sender's sign-in that are safe to show: who consented and when, and when the
 * access token was last obtained and expires. Never a token or any part of one.
 */
export interface CredentialFacts {
  /** The account that signed in through BeginConsent, as the provider named it. */
  consentedBy?: string;
  /** ISO 8601. */
  consentedAt?: string;
  tokenRefreshedAt?: string;
  tokenExpiresAt?: string;
}

export interface CredentialStatusStore {
  /** A consent completed: `account` signed in for the sender. */
  consented(sender: string, account: string, at?: Date): Promise<void>;
  /** An access token was obtained from the provider. */
  tokenObtained(sender: string, obtainedAt: Date, expiresAt: Date): Promise<void>;
  /** What is known; an empty object when nothing happened yet. */
  get(sender: string): Promise<CredentialFacts>;
  /** The sender was deleted. */
  forget(sender: string): Promise<void>;
}

/** Longest account name kept (an address is at most 320 octets). */
const MAX_ACCOUNT = 320;

/**
 * The facts under `status.<sender>` in the credentials bucket (durable, shared by every replica,
 * readable only by this service). Each update is a compare-and-set on the key's revision, so a
 * consent and a token refresh on two replicas do not undo each other.
 */
export async function openCredentialStatus(bus: Bus, replicas = 1): Promise<CredentialStatusStore> {
  const kv: KV = await new Kvm(bus.js).create(secretsBucketName(bus.names.prefix), { history: SECRETS_HISTORY, replicas });
  const key = (sender: string) => `status.${sender}`;

  async function read(sender: string): Promise<{ facts: CredentialFacts; revision: number }> {
    const e = await kv.get(key(sender));
    if (e?.operation !== 'PUT' || e.length === 0) return { facts: {}, revision: e?.revision ?? 0 };
    return { facts: e.json<CredentialFacts>(), revision: e.revision };
  }

  async function update(sender: string, change: (f: CredentialFacts) => CredentialFacts): Promise<void> {
    for (let tries = 0; ; tries++) {
      const { facts, revision } = await read(sender);
      const next = JSON.stringify(change(facts));
      try {
        // Revision 0: the key must not exist yet (create); else only over the version read.
        if (revision === 0) await kv.create(key(sender), next);
        else await kv.update(key(sender), next, revision);
        return;
      } catch (err) {
        if (tries >= 4) throw err;
      }
    }
  }

  return {
    consented: (sender, account, at = new Date()) =>
      update(sender, (f) => ({ ...f, consentedBy: account.slice(0, MAX_ACCOUNT), consentedAt: at.toISOString() })),
    tokenObtained: (sender, obtainedAt, expiresAt) =>
      update(sender, (f) => ({ ...f, tokenRefreshedAt: obtainedAt.toISOString(), tokenExpiresAt: expiresAt.toISOString() })),
    get: async (sender) => (await read(sender)).facts,
    forget: async (sender) => {
      await kv.purge(key(sender));
    },
  };
}

/** The facts as relay.v1.CredentialStatus: each time only when known. */
export function credentialStatusMessage(f: CredentialFacts): CredentialStatus {
  const ts = (iso: string | undefined) => {
    const d = iso ? new Date(iso) : undefined;
    return d && !Number.isNaN(d.getTime()) ? timestampFromDate(d) : undefined;
  };
  return create(CredentialStatusSchema, {
    consentedBy: f.consentedBy ?? '',
    consentedAt: ts(f.consentedAt),
    tokenRefreshedAt: ts(f.tokenRefreshedAt),
    tokenExpiresAt: ts(f.tokenExpiresAt),
  });
}
