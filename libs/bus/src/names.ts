/**
 * Every stream, subject and bucket name the relay uses, derived from one prefix so that several
 * relays (or test runs) can share a broker without colliding.
 */
export interface BusNames {
  prefix: string;
  submittedStream: string;
  dispatchStream: string;
  statusStream: string;
  /** Durable log of pacing grants: what Redis' pacing state is rebuilt from. */
  pacingStream: string;
  pacingSubject(sender: string): string;
  idempotencyBucket: string;
  bodyBucket: string;
  submittedSubject(sender: string): string;
  submittedWildcard: string;
  dispatchSubject(transport: string, sender: string): string;
  dispatchWildcard(transport: string): string;
  statusSubject(messageId: string): string;
  statusWildcard: string;
  /** Durable consumer names. */
  schedulerConsumer: string;
  senderConsumer(transport: string): string;
}

export function busNames(prefix: string): BusNames {
  const P = prefix.toUpperCase().replace(/-/g, '_');
  return {
    prefix,
    submittedStream: `${P}_SUBMITTED`,
    dispatchStream: `${P}_DISPATCH`,
    statusStream: `${P}_STATUS`,
    pacingStream: `${P}_PACING`,
    pacingSubject: (sender) => `${prefix}.pacing.${sender}`,
    idempotencyBucket: `${prefix}-idempotency`,
    bodyBucket: `${prefix}-bodies`,
    submittedSubject: (sender) => `${prefix}.submitted.${sender}`,
    submittedWildcard: `${prefix}.submitted.>`,
    dispatchSubject: (transport, sender) => `${prefix}.dispatch.${transport}.${sender}`,
    dispatchWildcard: (transport) => `${prefix}.dispatch.${transport}.>`,
    statusSubject: (id) => `${prefix}.status.${id}`,
    statusWildcard: `${prefix}.status.>`,
    schedulerConsumer: 'scheduler',
    senderConsumer: (transport) => `${transport}-sender`,
  };
}
