import { describe, expect, it } from 'vitest';
import { tracingOff } from './sdk.js';

describe('tracingOff', () => {
  it('is true only when traces go nowhere', () => {
    expect(tracingOff({ OTEL_TRACES_EXPORTER: 'none' })).toBe(true);
    expect(tracingOff({ OTEL_TRACES_EXPORTER: ' None ' })).toBe(true);
    expect(tracingOff({ OTEL_SDK_DISABLED: 'true' })).toBe(true);
    // The SDK's default exporter is otlp.
    expect(tracingOff({})).toBe(false);
    expect(tracingOff({ OTEL_TRACES_EXPORTER: '' })).toBe(false);
    expect(tracingOff({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(false);
    expect(tracingOff({ OTEL_TRACES_EXPORTER: 'console,none' })).toBe(false);
    expect(tracingOff({ OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp' })).toBe(false);
  });
});
