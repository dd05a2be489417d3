import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import type { SenderConfig } from '@relay/config';
import { EnvelopeSchema } from '@relay/proto';
import { decide, MAX_PARK_MS } from './route.js';

const sender = { id: 's', transport: 'smtp' } as SenderConfig;
const now = Date.parse('2026-11-23T12:00:00Z');

describe('decide', () => {
  it('dispatches a message that is due to its transport', () => {
    expect(decide(create(EnvelopeSchema, {}), sender, now)).toEqual({ action: 'dispatch', transport: 'smtp' });
    const past = create(EnvelopeSchema, { sendAt: timestampFromDate(new Date(now - 1000)) });
    expect(decide(past, { ...sender, transport: 'graph' }, now)).toEqual({ action: 'dispatch', transport: 'graph' });
  });
  it('waits until send_at or a retry time, the later of both', () => {
    const env = create(EnvelopeSchema, {
      sendAt: timestampFromDate(new Date(now + 5_000)),
      notBefore: timestampFromDate(new Date(now + 9_000)),
    });
    expect(decide(env, sender, now)).toEqual({ action: 'wait', ms: 9_000 });
  });
  it('parks far-future messages for at most an hour at a time', () => {
    const env = create(EnvelopeSchema, { sendAt: timestampFromDate(new Date(now + 20 * 86_400_000)) });
    expect(decide(env, sender, now)).toEqual({ action: 'wait', ms: MAX_PARK_MS });
    expect(MAX_PARK_MS).toBe(3_600_000);
  });
});
