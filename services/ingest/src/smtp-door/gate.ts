import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv4 } from 'node:net';
import type { ClientConfig, SenderConfig } from '@relay/config';
import { addrSpec } from '@relay/config';

/** Who may submit over the SMTP door, and as which senders. */
export interface SmtpGate {
  /** The client with these AUTH credentials; undefined for unknown ones. */
  login(username: string, password: string): ClientConfig | undefined;
  /** Whether `client` still signs in with the credentials whose digest() this is (a login made before a change). */
  holds(client: string, digest: Buffer): boolean;
  /** The first client whose `smtp.allow_ips` holds this address. */
  byAddress(ip: string): ClientConfig | undefined;
  /** The client's sender that owns `address` (its `from` or one of its `smtp_aliases`). */
  senderFor(client: ClientConfig, address: string): SenderConfig | undefined;
}

export const digest = (username: string, password: string) => createHash('sha256').update(username.toLowerCase()).update('\0').update(password).digest();

/**
 * Passwords are held only as SHA-256 digests of user and password and compared in constant time
 * against every client, as API keys are, so a lookup's timing says nothing about which users exist.
 */
export function createSmtpGate(clients: ClientConfig[], senders: Map<string, SenderConfig>): SmtpGate {
  // relay.yaml's passwords, and the digests of those the relay made (CreateSmtpPassword).
  const logins = clients
    .filter((c) => c.smtp?.username && (c.smtp.password || c.smtp.passwordDigest))
    .map((c) => ({
      client: c,
      digest: c.smtp!.password ? digest(c.smtp!.username!, c.smtp!.password.reveal()) : Buffer.from(c.smtp!.passwordDigest!, 'hex'),
    }));
  const networks = clients.filter((c) => c.smtp && c.smtp.allowIps.length > 0).map((c) => ({ client: c, list: blockList(c.smtp!.allowIps) }));
  const owners = new Map<string, Map<string, SenderConfig>>();
  for (const c of clients) {
    const own = new Map<string, SenderConfig>();
    for (const id of c.senders) {
      const s = senders.get(id);
      if (!s) continue;
      for (const a of [addrSpec(s.from), ...(s.smtpAliases ?? [])]) if (!own.has(a)) own.set(a, s);
    }
    owners.set(c.name, own);
  }
  return {
    login(username, password) {
      const presented = digest(username, password);
      let found: ClientConfig | undefined;
      for (const l of logins) if (l.digest.length === presented.length && timingSafeEqual(l.digest, presented)) found = l.client;
      return found;
    },
    holds(client, presented) {
      let found = false;
      for (const l of logins) if (l.client.name === client && l.digest.length === presented.length && timingSafeEqual(l.digest, presented)) found = true;
      return found;
    },
    byAddress(ip) {
      const plain = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
      const family = isIPv4(plain) ? 'ipv4' : 'ipv6';
      return networks.find((n) => n.list.check(plain, family))?.client;
    },
    senderFor(client, address) {
      return owners.get(client.name)?.get(address.trim().toLowerCase());
    },
  };
}

function blockList(ranges: string[]): BlockList {
  const list = new BlockList();
  for (const r of ranges) {
    const [ip, bits] = r.split('/') as [string, string | undefined];
    const family = isIPv4(ip) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(ip, family);
    else list.addSubnet(ip, Number(bits), family);
  }
  return list;
}
