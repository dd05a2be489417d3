import { create } from '@bufbuild/protobuf';
import { connectBus, getSentCopyStatus, type Bus } from '@relay/bus';
import type { SenderConfig } from '@relay/config';
import { GetSmtpAuthResponse_Kind, GetSmtpAuthResponseSchema, SentCopyState } from '@relay/proto';
import { consumerSettled, dropBus, eventually, freePort, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordSentCopy } from './job.js';
import { createSentCopyWorker, type SentCopyWorker } from './worker.js';

const prefix = uniquePrefix('sent-copy-worker');
const quiet = { info: () => {}, warn: () => {}, error: () => {} };
let bus: Bus;
let worker: SentCopyWorker;
let senders: Map<string, SenderConfig>;

beforeAll(async () => {
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'sent-copy-worker-test' });
  // Nothing listens on this port: every append fails to connect.
  const down = await freePort();
  senders = new Map([
    ['down', { id: 'down', transport: 'smtp', sentCopy: { imap: { host: '127.0.0.1', port: down, security: 'tls' } } } as SenderConfig],
    ['plain', { id: 'plain', transport: 'smtp' } as SenderConfig],
  ]);
  worker = createSentCopyWorker({
    bus,
    senders: () => senders,
    auth: { get: async () => create(GetSmtpAuthResponseSchema, { kind: GetSmtpAuthResponse_Kind.PASSWORD, user: 'u', password: 'p' }) },
    retryInitialMs: 100,
    retryMaxMs: 200,
    // A short life instead of three days: the give-up path is what is tested.
    maxAgeMs: 2_000,
    timeoutMs: 2_000,
    log: quiet,
  });
  await worker.start();
});

afterAll(async () => {
  await worker?.stop(2_000);
  await bus?.close();
  await dropBus(prefix);
});

describe('the sent-copy worker records where each copy stands', () => {
  it('shows RETRYING with the connection error, then GAVE_UP with it once the copy is too old', async () => {
    await recordSentCopy(bus, { sender: 'down', messageId: 'm-down', raw: Buffer.from('Subject: x\r\n\r\nx\r\n') }, quiet);
    const retrying = await eventually(async () => {
      const s = await getSentCopyStatus(bus, 'm-down');
      return s?.state === SentCopyState.RETRYING ? s : undefined;
    }, 10_000);
    expect(retrying.lastError).toMatch(/ECONNREFUSED/);
    expect(retrying.attempts).toBeGreaterThanOrEqual(1);
    expect(retrying.at).toBeDefined();

    const gaveUp = await eventually(async () => {
      const s = await getSentCopyStatus(bus, 'm-down');
      return s?.state === SentCopyState.GAVE_UP ? s : undefined;
    }, 10_000);
    // The reason shown is the last try's.
    expect(gaveUp.lastError).toMatch(/ECONNREFUSED/);
    expect(gaveUp.attempts).toBeGreaterThanOrEqual(retrying.attempts);
    expect(gaveUp.folder).toBe('');
    // The job is gone from the work queue: nothing is tried again.
    await consumerSettled(bus.jsm, bus.names.sentCopyStream, bus.names.sentCopyConsumer, 10_000);
    expect((await getSentCopyStatus(bus, 'm-down'))?.state).toBe(SentCopyState.GAVE_UP);
  });

  it('gives up a copy whose sender no longer has copy_to_sent, saying so', async () => {
    await recordSentCopy(bus, { sender: 'plain', messageId: 'm-plain', raw: Buffer.from('x') }, quiet);
    const s = await eventually(async () => getSentCopyStatus(bus, 'm-plain'), 10_000);
    expect(s.state).toBe(SentCopyState.GAVE_UP);
    expect(s.lastError).toBe('sender "plain" no longer has copy_to_sent');
  });

  it('records nothing for a message whose copy was never tried', async () => {
    expect(await getSentCopyStatus(bus, 'm-unknown')).toBeUndefined();
  });
});
