import type { SenderConfig } from '@relay/config';
import type { Envelope } from '@relay/proto';

/**
 * Decides when a sender's next message may go. The scheduler asks before every dispatch;
 * an implementation must never let a sender exceed its limits, whatever number of replicas run.
 */
export interface Pacer {
  /**
   * Resolves when `env` may be handed to its transport. `sender` returns the sender's current
   * configuration, read again at every look so a changed rate applies to waiting mail too. While
   * waiting it calls `keepAlive` (the scheduler extends the message's ack deadline) and gives up
   * when `signal` aborts.
   */
  acquire(sender: () => SenderConfig, env: Envelope, signal: AbortSignal, keepAlive: () => void): Promise<void>;
  /**
   * One look, no waiting: true when `env` may go now (its slot is then taken), false when it must
   * wait (no room, or the pacing state cannot be read right now).
   */
  tryAcquire(sender: SenderConfig, env: Envelope): Promise<boolean>;
  close(): Promise<void>;
}

/** For senders without `rate:` limits. */
export const unpaced: Pacer = {
  acquire: async () => {},
  tryAcquire: async () => true,
  close: async () => {},
};
