import type { Redis } from 'ioredis';
import type { ClientConfig, ClientLimits } from '@relay/config';
import { ErrorCode, RelayError, describe } from '@relay/core';
import type { Logger } from '@relay/telemetry';
import { CHARGE_SCRIPT, RELEASE_SCRIPT } from './budget-script.js';

/** How long past its delivery deadline a stored message still counts, should its release be missed. */
const RELEASE_SLACK_MS = 3_600_000;
const HOUR_MS = 3_600_000;

export interface BudgetCharge {
  /** The message id the stored quota is held under until the message is released. */
  messageId: string;
  sizeBytes: number;
  recipients: number;
  /** When the message is due (send_at), if later than now: it stays stored until then. */
  sendAtMs?: number | undefined;
}

/**
 * A client's rate limits and quotas (relay.yaml `clients[].limits`), counted in Redis so that they
 * hold across ingest replicas. Every door that accepts mail (gRPC SendMail, SMTP) charges the
 * message before storing it and releases it when storing failed.
 */
export interface ClientBudget {
  /** RESOURCE_EXHAUSTED naming the limit when the message would exceed one of `client`'s bounds; otherwise charges it. */
  charge(client: ClientConfig, msg: BudgetCharge): Promise<void>;
  /** Gives back a message's share of the stored quota (it was sent, failed, or never stored). Safe to repeat. */
  release(messageId: string): Promise<void>;
}

/** How long a charge waits for Redis while ingest connects to it. */
export const CONNECT_WAIT_MS = 2_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

export function hasLimits(l: ClientLimits): boolean {
  return !!(l.messagesPerSecond || l.bytesPerSecond || l.maxStoredMessages || l.maxStoredBytes || l.dailyRecipients);
}

type ChargeFn = (...args: Array<string | number>) => Promise<string>;
type ReleaseFn = (...args: Array<string | number>) => Promise<number>;

const LIMIT_TEXT: Record<string, (l: ClientLimits) => string> = {
  messages_per_second: (l) => `limits.messages_per_second (${l.messagesPerSecond}) reached; retry later`,
  bytes_per_second: (l) => `limits.bytes_per_second (${l.bytesPerSecond}) reached; retry later`,
  max_stored_messages: (l) =>
    `limits.max_stored_messages (${l.maxStoredMessages}) reached: that many of its messages wait for delivery; retry when some are sent`,
  max_stored_bytes: (l) => `limits.max_stored_bytes (${l.maxStoredBytes}) reached by its messages waiting for delivery; retry when some are sent`,
  daily_recipients: (l) => `limits.daily_recipients (${l.dailyRecipients}) reached for the last 24 hours`,
};

/**
 * `prefix` is the bus prefix: relays sharing a Redis keep apart. While Redis does not answer,
 * messages are admitted (and a warning logged once per outage): the limits protect the relay,
 * and refusing all mail for a lost cache would be the larger harm.
 */
export function createClientBudget(
  redis: Redis,
  prefix: string,
  logger: Logger,
  maxAgeMs: number,
  now: () => number = Date.now,
  /** The connection being made: a charge waits for it (at most CONNECT_WAIT_MS) instead of finding Redis "unavailable". */
  connected?: Promise<unknown>,
): ClientBudget {
  redis.defineCommand('relayClientCharge', { numberOfKeys: 7, lua: CHARGE_SCRIPT });
  redis.defineCommand('relayClientRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT });
  const commands = redis as unknown as Record<string, ChargeFn & ReleaseFn>;
  const chargeCmd: ChargeFn = commands.relayClientCharge!.bind(redis);
  const releaseCmd: ReleaseFn = commands.relayClientRelease!.bind(redis);
  const clientBase = `${prefix}:client:`;
  const owners = `${prefix}:client-owner`;
  let down = false;
  const unavailable = (err: unknown) => {
    if (!down) logger.warn({ err: describe(err) }, 'Redis unavailable: client limits are not enforced until it answers');
    down = true;
  };

  return {
    async charge(client, msg) {
      const l = client.limits;
      if (!hasLimits(l)) return;
      // A client that just got its first limits: ingest is still connecting to Redis, whose
      // fail-fast client would refuse the command and admit the message uncounted.
      if (connected && redis.status !== 'ready') await Promise.race([connected, sleep(CONNECT_WAIT_MS)]);
      const t = now();
      const base = clientBase + encodeURIComponent(client.name);
      const hour = Math.floor(t / HOUR_MS);
      const expiry = Math.max(t, msg.sendAtMs ?? 0) + maxAgeMs + RELEASE_SLACK_MS;
      let reached: string;
      try {
        reached = await chargeCmd(
          `${base}:rate`,
          `${base}:stored`,
          `${base}:sizes`,
          `${base}:stored-bytes`,
          owners,
          `${base}:rcpt:${hour}`,
          `${prefix}:client-charged:${msg.messageId}`,
          t,
          msg.messageId,
          encodeURIComponent(client.name),
          msg.sizeBytes,
          msg.recipients,
          l.messagesPerSecond ?? 0,
          l.bytesPerSecond ?? 0,
          l.maxStoredMessages ?? 0,
          l.maxStoredBytes ?? 0,
          l.dailyRecipients ?? 0,
          expiry,
          `${base}:rcpt:`,
          hour,
        );
        down = false;
      } catch (err) {
        unavailable(err);
        return;
      }
      if (reached) throw new RelayError(ErrorCode.ResourceExhausted, `client "${client.name}": ${LIMIT_TEXT[reached]?.(l) ?? reached}`);
    },
    async release(messageId) {
      try {
        await releaseCmd(owners, messageId, clientBase);
      } catch (err) {
        unavailable(err);
      }
    },
  };
}
