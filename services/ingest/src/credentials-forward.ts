import { status, type ServiceError } from '@grpc/grpc-js';
import { ErrorCode, RelayError, type InternalAuth } from '@relay/core';
import {
  createCredentialsClient,
  type BeginConsentResponse,
  type CreateWebhookSecretResponse,
  type CredentialStatus,
  type CredentialsClient,
  type SetSenderSecretResponse,
  type TestSenderResponse,
} from '@relay/proto';
import type { ConsentReturn } from './public-http.js';

/** Ingest's client for the admin calls the credentials service answers (AdminService forwarding). */
export interface AdminForward {
  beginConsent(sender: string): Promise<BeginConsentResponse>;
  testSender(sender: string, to: string): Promise<TestSenderResponse>;
  setSenderSecret(sender: string, field: string, value: string): Promise<SetSenderSecretResponse>;
  deleteSenderSecrets(sender: string): Promise<void>;
  /** The browser's return from a consent sign-in: the page's HTTP status and text. */
  completeConsent(fields: ConsentReturn): Promise<{ status: number; message: string }>;
  /** Who consented for the sender and its token's times (no secret); undefined when nothing is known. */
  credentialStatus(sender: string): Promise<CredentialStatus | undefined>;
  /** A new signing secret for a webhook of a client managed through the API, made and kept by the credentials service. */
  createWebhookSecret(client: string, url: string, keepPreviousSeconds: number | undefined): Promise<CreateWebhookSecretResponse>;
  /** The `webhook-signature` header of one delivery, made by the credentials service with the webhook's secrets. */
  signWebhook(client: string, url: string, id: string, at: Date, payload: Uint8Array): Promise<string>;
  close(): void;
}

export const FORWARD_DEADLINE_MS = 15_000;
/** GetSender waits this long for the credential status, then answers without it. */
export const STATUS_DEADLINE_MS = 3_000;
/** A webhook signature is one HMAC: a slow answer is a failed attempt, tried again later. */
export const SIGN_DEADLINE_MS = 5_000;
/** A sender test may wait for connect, greeting and a send: up to the SMTP timeouts. */
export const TEST_DEADLINE_MS = 120_000;

/** `auth` is the internal authentication; undefined when none was set up (the calls then explain that). */
export function createAdminForward(address: string, auth: InternalAuth | undefined): AdminForward {
  let client: CredentialsClient | undefined;
  async function forward<Res>(call: (c: CredentialsClient) => Promise<Res>): Promise<Res> {
    if (!auth) {
      throw new RelayError(
        ErrorCode.FailedPrecondition,
        'AdminService needs internal authentication on ingest (RELAY_INTERNAL_TOKEN, or RELAY_INTERNAL_CA/CERT/KEY) to call the credentials service',
      );
    }
    return call((client ??= createCredentialsClient(address, auth))).catch((err: ServiceError) => {
      throw fromCredentials(err);
    });
  }
  return {
    beginConsent: (sender) => forward((c) => c.beginConsent({ sender }, FORWARD_DEADLINE_MS)),
    testSender: (sender, to) => forward((c) => c.testSender({ sender, to }, TEST_DEADLINE_MS)),
    setSenderSecret: (sender, field, value) => forward((c) => c.setSenderSecret({ id: sender, field, value }, FORWARD_DEADLINE_MS)),
    deleteSenderSecrets: async (sender) => void (await forward((c) => c.deleteSenderSecrets({ sender }, FORWARD_DEADLINE_MS))),
    completeConsent: async (fields) => {
      const r = await forward((c) => c.completeConsent(fields, FORWARD_DEADLINE_MS));
      // Only a status a page may have: anything else means the two services disagree.
      if (r.httpStatus < 200 || r.httpStatus > 599) throw new RelayError(ErrorCode.Internal, `the credentials service answered HTTP status ${r.httpStatus}`);
      return { status: r.httpStatus, message: r.message };
    },
    credentialStatus: async (sender) => (await forward((c) => c.getCredentialStatus({ sender }, STATUS_DEADLINE_MS))).status,
    createWebhookSecret: (client, url, keepPreviousSeconds) =>
      forward((c) => c.createWebhookSecret({ client, url, ...(keepPreviousSeconds === undefined ? {} : { keepPreviousSeconds }) }, FORWARD_DEADLINE_MS)),
    signWebhook: async (client, url, id, at, payload) =>
      (await forward((c) => c.signWebhook({ client, url, id, timestamp: BigInt(Math.floor(at.getTime() / 1000)), payload }, SIGN_DEADLINE_MS))).signature,
    close: () => client?.close(),
  };
}

/** The credentials service's answer as the caller should see it: its status and text, except for our own plumbing. */
function fromCredentials(err: ServiceError): RelayError {
  switch (err.code) {
    case status.NOT_FOUND:
      return new RelayError(ErrorCode.NotFound, err.details, { cause: err });
    case status.FAILED_PRECONDITION:
      return new RelayError(ErrorCode.FailedPrecondition, err.details, { cause: err });
    case status.INVALID_ARGUMENT:
      return new RelayError(ErrorCode.InvalidArgument, err.details, { cause: err });
    case status.UNAUTHENTICATED:
      return new RelayError(
        ErrorCode.Unavailable,
        'the credentials service refused ingest (is the internal token or certificate authority the same on both?)',
        { cause: err },
      );
    default:
      return new RelayError(ErrorCode.Unavailable, `the credentials service is unavailable: ${err.details || err.message}`, { cause: err });
  }
}
