import { create } from '@bufbuild/protobuf';
import { makeGenericClientConstructor, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { ErrorCode, RelayError, type InternalAuth } from '@relay/core';
import {
  BeginConsentRequestSchema,
  CredentialsService,
  internalChannelCredentials,
  internalMetadata,
  TestSenderRequestSchema,
  toGrpcDefinition,
  type BeginConsentResponse,
  type TestSenderResponse,
} from '@relay/proto';

/** Ingest's client for the admin calls the credentials service answers (AdminService forwarding). */
export interface AdminForward {
  beginConsent(sender: string): Promise<BeginConsentResponse>;
  testSender(sender: string, to: string): Promise<TestSenderResponse>;
  close(): void;
}

const Ctor = makeGenericClientConstructor(toGrpcDefinition(CredentialsService), 'CredentialsService');

export const FORWARD_DEADLINE_MS = 15_000;
/** A sender test may wait for connect, greeting and a send: up to the SMTP timeouts. */
export const TEST_DEADLINE_MS = 120_000;

/** `auth` is the internal authentication; undefined when none was set up (the calls then explain that). */
export function createAdminForward(address: string, auth: InternalAuth | undefined): AdminForward {
  let client: (Client & Record<string, Function>) | undefined;
  const get = (a: InternalAuth) => (client ??= new Ctor(address, internalChannelCredentials(a)) as Client & Record<string, Function>);
  function unary<Res>(method: string, req: unknown, deadlineMs: number): Promise<Res> {
    if (!auth) {
      return Promise.reject(
        new RelayError(ErrorCode.FailedPrecondition, 'AdminService needs internal authentication on ingest (RELAY_INTERNAL_TOKEN, or RELAY_INTERNAL_CA/CERT/KEY) to call the credentials service'),
      );
    }
    const md = internalMetadata(auth);
    return new Promise<Res>((resolve, reject) => {
      get(auth)[method]!(req, md, { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res: Res) => (err ? reject(fromCredentials(err)) : resolve(res)));
    });
  }
  return {
    beginConsent: (sender) => unary<BeginConsentResponse>('beginConsent', create(BeginConsentRequestSchema, { sender }), FORWARD_DEADLINE_MS),
    testSender: (sender, to) => unary<TestSenderResponse>('testSender', create(TestSenderRequestSchema, { sender, to }), TEST_DEADLINE_MS),
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
      return new RelayError(ErrorCode.Unavailable, 'the credentials service refused ingest (is the internal token or certificate authority the same on both?)', { cause: err });
    default:
      return new RelayError(ErrorCode.Unavailable, `the credentials service is unavailable: ${err.details || err.message}`, { cause: err });
  }
}
