import { describe, expect, it } from 'vitest';
import { exportDefaults } from './telemetry-export.js';

describe('exportDefaults', () => {
  it('turns export off when no OTEL_* setting says where to export', () => {
    expect(exportDefaults({})).toEqual({ OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' });
    expect(exportDefaults({ OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_ENDPOINT: ' ' })).toEqual({
      OTEL_TRACES_EXPORTER: 'none',
      OTEL_METRICS_EXPORTER: 'none',
    });
  });

  it('leaves an explicit exporter or collector alone', () => {
    for (const k of [
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
      'OTEL_TRACES_EXPORTER',
      'OTEL_METRICS_EXPORTER',
      'OTEL_SDK_DISABLED',
    ]) {
      expect(exportDefaults({ [k]: 'http://collector:4318' }), k).toEqual({});
    }
  });
});
