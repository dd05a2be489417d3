import { toJson } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { connectBus, type Bus } from '@relay/bus';
import { CredentialStatusSchema } from '@relay/proto';
import { dropBus, testNatsUrl, uniquePrefix } from '@relay/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialStatusMessage, openCredentialStatus, type CredentialStatusStore } from './credential-status.js';

let bus: Bus;
let prefix: string;
let status: CredentialStatusStore;

beforeAll(async () => {
  prefix = uniquePrefix('credstatus');
  bus = await connectBus({ servers: testNatsUrl(), prefix, name: 'credential-status-test' });
  status = await openCredentialStatus(bus);
});

afterAll(async () => {
  await bus.close();
  await dropBus(prefix);
});

describe('credential status', () => {
  it('knows nothing of a sender before a consent or a token', async () => {
    expect(await status.get('fresh')).toEqual({});
    expect(toJson(CredentialStatusSchema, credentialStatusMessage({}))).toEqual({});
  });

  it('records who consented and when, then each token refresh, keeping both', async () => {
    const consentAt = new Date('2026-03-01T09:00:00Z');
    await status.consented('mailbox', 'mailbox@campus.example', consentAt);
    expect(await status.get('mailbox')).toEqual({ consentedBy: 'mailbox@campus.example', consentedAt: consentAt.toISOString() });

    await status.tokenObtained('mailbox', new Date('2026-03-01T09:00:05Z'), new Date('2026-03-01T10:00:05Z'));
    await status.tokenObtained('mailbox', new Date('2026-03-01T09:50:00Z'), new Date('2026-03-01T10:50:00Z'));
    const facts = await status.get('mailbox');
    expect(facts).toEqual({
      consentedBy: 'mailbox@campus.example',
      consentedAt: '2026-03-01T09:00:00.000Z',
      tokenRefreshedAt: '2026-03-01T09:50:00.000Z',
      tokenExpiresAt: '2026-03-01T10:50:00.000Z',
    });
    const msg = credentialStatusMessage(facts);
    expect(msg.consentedBy).toBe('mailbox@campus.example');
    expect(timestampDate(msg.consentedAt!).toISOString()).toBe('2026-03-01T09:00:00.000Z');
    expect(timestampDate(msg.tokenRefreshedAt!).toISOString()).toBe('2026-03-01T09:50:00.000Z');
    expect(timestampDate(msg.tokenExpiresAt!).toISOString()).toBe('2026-03-01T10:50:00.000Z');
  });

  it('keeps a consent and a token refresh that happen at once (two replicas)', async () => {
    const other = await openCredentialStatus(bus);
    await Promise.all([
      status.consented('busy', 'busy@campus.example'),
      other.tokenObtained('busy', new Date('2026-03-02T08:00:00Z'), new Date('2026-03-02T09:00:00Z')),
      other.tokenObtained('busy', new Date('2026-03-02T08:00:00Z'), new Date('2026-03-02T09:00:00Z')),
    ]);
    const facts = await status.get('busy');
    expect(facts.consentedBy).toBe('busy@campus.example');
    expect(facts.tokenRefreshedAt).toBe('2026-03-02T08:00:00.000Z');
  });

  it('forgets a deleted sender, and records anew after that', async () => {
    await status.consented('gone', 'gone@campus.example');
    await status.forget('gone');
    expect(await status.get('gone')).toEqual({});
    await status.tokenObtained('gone', new Date('2026-03-03T08:00:00Z'), new Date('2026-03-03T09:00:00Z'));
    expect(await status.get('gone')).toEqual({ tokenRefreshedAt: '2026-03-03T08:00:00.000Z', tokenExpiresAt: '2026-03-03T09:00:00.000Z' });
  });
});
