import { describe, expect, it } from 'vitest';
import { setTelemetryHandle, shutdownTelemetry, telemetryHandle } from './state.js';

describe('shutdownTelemetry', () => {
  it('gives up on an export that does not finish in time, and says so', async () => {
    const before = telemetryHandle();
    let shutdowns = 0;
    setTelemetryHandle({ metricsText: async () => '', shutdown: () => (shutdowns++, new Promise<void>(() => {})) });
    try {
      // The test's own timeout is far shorter than an export that never ends.
      expect(await shutdownTelemetry(20)).toBe(false);
      expect(shutdowns).toBe(1);
      setTelemetryHandle({ metricsText: async () => '', shutdown: async () => {} });
      expect(await shutdownTelemetry(60_000)).toBe(true);
    } finally {
      if (before) setTelemetryHandle(before);
    }
  });
});
