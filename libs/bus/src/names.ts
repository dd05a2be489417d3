/**
 * Every stream, subject and bucket name the relay uses, derived from one prefix so that several
 * relays (or test runs) can share a broker without colliding.
 */
export interface BusNames {
  prefix: string;
  submittedStream: string;
  /** Mail the scheduler set aside per sender: waiting for its pace, its send_at or a retry's time. */
  heldStream: string;
  dispatchStream: string;
  statusStream: string;
  /** Durable log of pacing grants: what Redis' pacing state is rebuilt from. */
  pacingStream: string;
  pacingSubject(sender: string): string;
  idempotencyBucket: string;
  bodyBucket: string;
  /** Envelopes of FAILED messages, kept for RetryMessages (object store, TTL = failed retention). */
  failedBucket: string;
  /** The message index ListMessages reads: one summary per message (KV, key = message id). */
  messagesBucket: string;
  /** The registry: senders and clients managed through the operations API (KV, key = id / name). */
  sendersBucket: string;
  clientsBucket: string;
  /** Console sign-ins ended before their cookie expires (KV, kept for the sign-in lifetime; ingest only). */
  consoleRevokedBucket: string;
  /** Recipients that hard-bounced (KV, key = SHA-256 of the address, kept 90 days). */
  suppressedBucket: string;
  /** Which replica reads a sender's delivery reports next, and where reading got to (KV, key = hash of the folder). */
  reportReadersBucket: string;
  /** The durable consumer on the status stream that keeps the message index (ingest replicas share it). */
  messagesIndexConsumer: string;
  submittedSubject(sender: string): string;
  submittedWildcard: string;
  heldSubject(sender: string): string;
  heldWildcard: string;
  dispatchSubject(transport: string, sender: string): string;
  dispatchWildcard(transport: string): string;
  statusSubject(messageId: string): string;
  statusWildcard: string;
  /** Durable consumer names: the scheduler's intake on every submitted subject (lanes on the held stream add `-<sender>`). */
  schedulerConsumer: string;
  senderConsumer(transport: string): string;
  /** Webhook events waiting for their endpoint (work queue; subject per endpoint and message). */
  webhooksStream: string;
  webhookSubject(endpoint: string, messageId: string): string;
  webhookWildcard(endpoint: string): string;
  /** The last delivery attempts per endpoint (KV with history, key = endpoint). */
  webhookLogBucket: string;
  /** The durable on the status stream that turns state changes into webhook events (ingest replicas share it). */
  webhooksFanoutConsumer: string;
  /** One durable per endpoint on the webhooks stream. */
  webhookConsumer(endpoint: string): string;
  /** Sent messages waiting to be appended to their mailbox's Sent folder (work queue; copy_to_sent). */
  sentCopyStream: string;
  sentCopySubject(sender: string): string;
  sentCopyWildcard: string;
  /** The smtp-sender replicas' durable on the sent-copy stream. */
  sentCopyConsumer: string;
  /** Where each message's copy to Sent stands, for GetMessage (KV, key = message id). */
  sentCopiesBucket: string;
}

export function busNames(prefix: string): BusNames {
  const P = prefix.toUpperCase().replace(/-/g, '_');
  return {
    prefix,
    submittedStream: `${P}_SUBMITTED`,
    heldStream: `${P}_HELD`,
    dispatchStream: `${P}_DISPATCH`,
    statusStream: `${P}_STATUS`,
    pacingStream: `${P}_PACING`,
    pacingSubject: (sender) => `${prefix}.pacing.${sender}`,
    idempotencyBucket: `${prefix}-idempotency`,
    bodyBucket: `${prefix}-bodies`,
    failedBucket: `${prefix}-failed`,
    messagesBucket: `${prefix}-messages`,
    sendersBucket: `${prefix}-senders`,
    clientsBucket: `${prefix}-clients`,
    consoleRevokedBucket: `${prefix}-console-revoked`,
    suppressedBucket: `${prefix}-suppressed`,
    reportReadersBucket: `${prefix}-report-readers`,
    messagesIndexConsumer: 'messages-index',
    submittedSubject: (sender) => `${prefix}.submitted.${sender}`,
    submittedWildcard: `${prefix}.submitted.>`,
    heldSubject: (sender) => `${prefix}.held.${sender}`,
    heldWildcard: `${prefix}.held.>`,
    dispatchSubject: (transport, sender) => `${prefix}.dispatch.${transport}.${sender}`,
    dispatchWildcard: (transport) => `${prefix}.dispatch.${transport}.>`,
    statusSubject: (id) => `${prefix}.status.${id}`,
    statusWildcard: `${prefix}.status.>`,
    schedulerConsumer: 'scheduler',
    senderConsumer: (transport) => `${transport}-sender`,
    webhooksStream: `${P}_WEBHOOKS`,
    webhookSubject: (endpoint, id) => `${prefix}.webhook.${endpoint}.${id}`,
    webhookWildcard: (endpoint) => `${prefix}.webhook.${endpoint}.>`,
    webhookLogBucket: `${prefix}-webhook-log`,
    webhooksFanoutConsumer: 'webhooks',
    webhookConsumer: (endpoint) => `webhook-${endpoint}`,
    sentCopyStream: `${P}_SENT_COPY`,
    sentCopySubject: (sender) => `${prefix}.sentcopy.${sender}`,
    sentCopyWildcard: `${prefix}.sentcopy.>`,
    sentCopyConsumer: 'sent-copy',
    sentCopiesBucket: `${prefix}-sent-copies`,
  };
}
