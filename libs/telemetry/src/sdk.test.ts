import { describe, expect, it } from 'vitest';
import { exportDefaults, tracingOff } from './sdk.js';

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

describe('exportDefaults', () => {
  it('turns export off when no OTEL_* setting says where to export', () => {
    expect(exportDefaults({})).toEqual({ OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' });
    expect(exportDefaults({ OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_ENDPOINT: ' ' })).toEqual({ OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' });
    expect(tracingOff({ ...exportDefaults({}) })).toBe(true);
  });

  it('leaves an explicit exporter or collector alone', () => {
    for (const k of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', 'OTEL_TRACES_EXPORTER', 'OTEL_METRICS_EXPORTER', 'OTEL_SDK_DISABLED']) {
      expect(exportDefaults({ [k]: 'http://collector:4318' }), k).toEqual({});
    }
  });
});
