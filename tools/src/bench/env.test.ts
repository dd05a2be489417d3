import { readEnv, requireEnvelopeKeys, requireInternalAuth, requireMasterKey } from '@relay/config';
import { describe, expect, it } from 'vitest';
import { benchServiceEnv } from './env.js';

describe('benchServiceEnv', () => {
  it('gives every service the keys it refuses to start without', () => {
    const env = readEnv(benchServiceEnv({}, { natsUrl: 'nats://127.0.0.1:4222', configPath: '/tmp/relay.yaml', prefix: 'bench-x' }));
    expect(requireMasterKey(env)).toHaveLength(32);
    expect(requireEnvelopeKeys(env).current).toHaveLength(32);
    expect(() => requireInternalAuth(env.internalAuth, 'relay-smtp-sender')).not.toThrow();
    expect(env).toMatchObject({ busPrefix: 'bench-x', grpcPort: 0, metricsPort: 0, host: '127.0.0.1' });
  });
});
