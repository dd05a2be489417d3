import { SpanStatusCode, trace } from '@opentelemetry/api';
import { relayInstruments } from './instruments.js';

/**
 * One token refresh of a sender, from taking its refresh lock to releasing it: a span (no token
 * in it) and the refresh counters. The holder says what came of it; a refresh that ends without
 * `obtained()` or `reused()` counts as failed.
 */
export interface TokenRefreshWork {
  /** A fresh token was obtained from the provider. */
  obtained(): void;
  /** Another replica's fresh token was found: no refresh was needed. */
  reused(): void;
  end(): void;
}

export function startTokenRefresh(sender: string): TokenRefreshWork {
  const span = trace.getTracer('campus-relay').startSpan('token refresh', { attributes: { 'relay.sender': sender } });
  let outcome: 'failed' | 'obtained' | 'reused' = 'failed';
  let ended = false;
  return {
    obtained: () => void (outcome = 'obtained'),
    reused: () => void (outcome = 'reused'),
    end() {
      if (ended) return;
      ended = true;
      span.setAttribute('relay.token.outcome', outcome);
      const m = relayInstruments();
      if (outcome === 'obtained') m.tokenRefreshes.add(1, { sender });
      if (outcome === 'failed') {
        m.tokenRefreshFailures.add(1, { sender });
        span.setStatus({ code: SpanStatusCode.ERROR, message: 'token refresh failed' });
      }
      span.end();
    },
  };
}
