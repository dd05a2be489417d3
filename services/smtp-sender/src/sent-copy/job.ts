import { setTimeout as sleep } from 'node:timers/promises';
import { headers as natsHeaders, nanos } from '@nats-io/nats-core';
import { DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { ensureStreams, type Bus } from '@relay/bus';
import { describe } from '@relay/core';
import { sentCopies } from './metrics.js';

/** The headers of a copy job; its data is the message exactly as sent (empty when stored as a body). */
export const SENT_COPY_HEADER = {
  messageId: 'Relay-Message-Id',
  sender: 'Relay-Sender',
  /** The body store object holding the bytes, for a message too large for one broker message. */
  bodyRef: 'Relay-Body-Ref',
} as const;

/** How long a copy is tried before it is given up (logged and counted): the stream keeps it that long. */
export const SENT_COPY_MAX_AGE_MS = 3 * 86_400_000;
/** Room left in a broker message for the job's headers. */
const HEADROOM_BYTES = 64 * 1024;
/** Tries to store a job before the copy is given up; the mail itself is sent either way. */
const STORE_TRIES = 6;

/** The work queue of copies, made by the smtp-sender at start (an existing one keeps its messages). */
export async function ensureSentCopyStream(bus: Bus): Promise<void> {
  const n = bus.names;
  await ensureStreams(bus.jsm, [
    {
      name: n.sentCopyStream,
      subjects: [n.sentCopyWildcard],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: bus.topology.replicas,
      duplicate_window: nanos(bus.topology.duplicateWindowMs),
      discard: DiscardPolicy.Old,
      max_age: nanos(SENT_COPY_MAX_AGE_MS + 86_400_000),
    },
  ]);
}

/**
 * Records that `raw`, just accepted by the provider, is to be appended to the sender's Sent
 * folder. Never throws: the message is sent, and nothing here may make it go again. A job that
 * cannot be stored after a few tries is logged and counted as lost. Its Nats-Msg-Id stores it
 * once if the message is sent again in the window between the provider's accept and the ack.
 */
export async function recordSentCopy(
  bus: Bus,
  job: { sender: string; messageId: string; raw: Buffer },
  log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void },
): Promise<void> {
  const h = natsHeaders();
  h.set(SENT_COPY_HEADER.messageId, job.messageId);
  h.set(SENT_COPY_HEADER.sender, job.sender);
  let data: Uint8Array = job.raw;
  for (let n = 0; ; n++) {
    try {
      if (job.raw.length > bus.maxPayload - HEADROOM_BYTES) {
        const ref = `sent-copy-${job.messageId}`;
        await bus.bodies.putBlob({ name: ref }, job.raw);
        h.set(SENT_COPY_HEADER.bodyRef, ref);
        data = new Uint8Array(0);
      }
      await bus.js.publish(bus.names.sentCopySubject(job.sender), data, { msgID: `${job.messageId}.sent-copy`, headers: h });
      return;
    } catch (err) {
      if (n + 1 >= STORE_TRIES) {
        sentCopies().add(1, { sender: job.sender, outcome: 'lost' });
        log.error(
          { message_id: job.messageId, sender: job.sender, err: describe(err) },
          'could not store the copy for the Sent folder; the message was sent, no copy will be made',
        );
        return;
      }
      log.warn({ message_id: job.messageId, err: describe(err), tries: n + 1 }, 'could not store the copy for the Sent folder; trying again');
      await sleep(Math.min(200 * 2 ** n, 3_000));
    }
  }
}
