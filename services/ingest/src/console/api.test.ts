import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { CredentialStatusSchema, type GetSenderRequest, GetSenderResponseSchema, SenderSchema } from '@relay/proto';
import { describe, expect, it } from 'vitest';
import { createConsoleApi, type Handler } from './api.js';
import type { Session } from './session.js';

const olive: Session = { email: 'olive@campus.example', name: 'Olive', groups: [], sid: 'test-sign-in', iat: 0, csrf: 'c', exp: Number.MAX_SAFE_INTEGER };
const at = new Date('2030-01-02T03:04:05Z');

/** GetSender as ingest answers it, with the credential status the credentials service gave. */
const getSender = (async (call: { request: GetSenderRequest }) =>
  create(GetSenderResponseSchema, {
    sender: create(SenderSchema, { id: call.request.id }),
    credential: create(CredentialStatusSchema, {
      consentedBy: `${call.request.id}@campus.example`,
      consentedAt: timestampFromDate(at),
      tokenRefreshedAt: timestampFromDate(at),
      tokenExpiresAt: timestampFromDate(new Date(at.getTime() + 3_600_000)),
    }),
  })) as unknown as Handler;

describe('console API: GetSender', () => {
  const api = createConsoleApi({ getSender });

  it("gives an owner their sender's consent and token facts", async () => {
    expect(await api.call(olive, { kind: 'owner', senders: ['mine'] }, 'GetSender', { id: 'mine' })).toEqual({
      sender: { id: 'mine' },
      credential: {
        consentedBy: 'mine@campus.example',
        consentedAt: '2030-01-02T03:04:05Z',
        tokenRefreshedAt: '2030-01-02T03:04:05Z',
        tokenExpiresAt: '2030-01-02T04:04:05Z',
      },
    });
  });

  it("refuses an owner another sender's, facts included", async () => {
    await expect(api.call(olive, { kind: 'owner', senders: ['mine'] }, 'GetSender', { id: 'theirs' })).rejects.toThrow(
      'id: sender "theirs" is not one of yours',
    );
  });
});
