import { within } from '@relay/core';

/**
 * What the process' telemetry setup (register.ts, loaded with `node --import`) leaves for the rest
 * of the code: the ops server's `/metrics` and runService's final flush. Kept apart from the SDK so
 * that importing the library does not load the SDK.
 */
export interface TelemetryHandle {
  /** The process' OpenTelemetry metrics in Prometheus text format. */
  metricsText(): Promise<string>;
  /** Exports what is still buffered and stops the SDK. */
  shutdown(): Promise<void>;
}

// On globalThis rather than in a module variable: the register module and the service may reach
// this library by different paths (a symlinked workspace, the image's copy).
const STATE = Symbol.for('campus-relay.telemetry');
type Holder = { [STATE]?: TelemetryHandle };

export function telemetryHandle(): TelemetryHandle | undefined {
  return (globalThis as Holder)[STATE];
}

export function setTelemetryHandle(handle: TelemetryHandle): void {
  (globalThis as Holder)[STATE] = handle;
}

/** Named defaults, with units. */
export const TELEMETRY_DEFAULTS = {
  /**
   * How long a stopping service waits for its last spans and metrics to be exported. A reachable
   * collector takes them at once; an unreachable one is retried by the exporter for up to
   * OTEL_EXPORTER_OTLP_TIMEOUT, which would hold up every stop.
   */
  shutdownFlushMs: 1_000,
} as const;

/**
 * Flushes and stops the SDK; safe to call twice, and when the process runs without one. Resolves
 * false when the export did not finish within `withinMs` (it goes on in the background).
 */
export async function shutdownTelemetry(withinMs: number = TELEMETRY_DEFAULTS.shutdownFlushMs): Promise<boolean> {
  const handle = telemetryHandle();
  return handle ? within(handle.shutdown(), withinMs) : true;
}

/** The process' OpenTelemetry metrics in Prometheus text format; empty without an SDK. */
export async function openTelemetryMetricsText(): Promise<string> {
  return (await telemetryHandle()?.metricsText()) ?? '';
}
