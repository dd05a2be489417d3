import { metrics, type Counter, type Histogram, type Meter } from '@opentelemetry/api';

/** The relay's own instruments, one set per process (created on first use, from the global meter). */
export interface RelayInstruments {
  meter: Meter;
  /** Messages stored by a front door. Attributes: sender, door (grpc, smtp). */
  accepted: Counter;
  /** Connections to the SMTP door. Attributes: port (submission, smtps). */
  smtpSessions: Counter;
  /** Messages the provider accepted. Attributes: sender, transport. */
  sent: Counter;
  /** Messages that failed for good. Attributes: sender, transport. */
  failed: Counter;
  /** Attempts that failed and were scheduled again. Attributes: sender, transport. */
  retrying: Counter;
  /** One delivery attempt, from taking it off the queue to the provider's answer. Attributes: transport, outcome. */
  sendDuration: Histogram;
  /** Time a message waited for its sender's pacing slot. Attributes: sender. */
  pacingWait: Histogram;
  /** Access tokens obtained from the provider. Attributes: sender. */
  tokenRefreshes: Counter;
  /** Token refreshes that failed. Attributes: sender. */
  tokenRefreshFailures: Counter;
}

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

let instruments: RelayInstruments | undefined;

/**
 * The instruments, from the meter provider the telemetry setup registered; without one (unit
 * tests, a service started without `--import`) they record nothing.
 */
export function relayInstruments(): RelayInstruments {
  if (instruments) return instruments;
  const meter = metrics.getMeter('campus-relay');
  const seconds = { unit: 's', advice: { explicitBucketBoundaries: SECONDS_BUCKETS } };
  instruments = {
    meter,
    accepted: meter.createCounter('relay_messages_accepted', { description: 'Messages accepted by SendMail or the SMTP door (stored in JetStream)' }),
    smtpSessions: meter.createCounter('relay_smtp_sessions', { description: 'Connections to the SMTP door' }),
    sent: meter.createCounter('relay_messages_sent', { description: 'Messages the provider accepted' }),
    failed: meter.createCounter('relay_messages_failed', { description: 'Messages that failed permanently' }),
    retrying: meter.createCounter('relay_messages_retrying', { description: 'Delivery attempts that failed and will be retried' }),
    sendDuration: meter.createHistogram('relay_send_duration_seconds', {
      description: "Duration of one delivery attempt, up to the provider's answer",
      ...seconds,
    }),
    pacingWait: meter.createHistogram('relay_pacing_wait_seconds', { description: "Time a message waited for its sender's pacing slot", ...seconds }),
    tokenRefreshes: meter.createCounter('relay_token_refreshes', { description: 'Access tokens obtained from the identity provider' }),
    tokenRefreshFailures: meter.createCounter('relay_token_refresh_failures', { description: 'Access token refreshes that failed' }),
  };
  return instruments;
}
