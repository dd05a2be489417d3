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

/** Flushes and stops the SDK; safe to call twice, and when the process runs without one. */
export async function shutdownTelemetry(): Promise<void> {
  await telemetryHandle()?.shutdown();
}

/** The process' OpenTelemetry metrics in Prometheus text format; empty without an SDK. */
export async function openTelemetryMetricsText(): Promise<string> {
  return (await telemetryHandle()?.metricsText()) ?? '';
}
