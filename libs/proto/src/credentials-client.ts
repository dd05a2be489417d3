import { create, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import type { InternalAuth } from '@relay/core';
import {
  CompleteConsentRequestSchema,
  CredentialsService,
  DeleteSenderSecretsRequestSchema,
  GetCredentialStatusRequestSchema,
  GetGraphTokenRequestSchema,
  GetSmtpAuthRequestSchema,
  SignWebhookRequestSchema,
  type CompleteConsentResponse,
  type DeleteSenderSecretsResponse,
  type GetCredentialStatusResponse,
  type GetGraphTokenResponse,
  type GetSmtpAuthResponse,
  type SignWebhookResponse,
} from './gen/relay/internal/v1/internal_pb.js';
import {
  BeginConsentRequestSchema,
  CreateWebhookSecretRequestSchema,
  SetSenderSecretRequestSchema,
  TestSenderRequestSchema,
  type BeginConsentResponse,
  type CreateWebhookSecretResponse,
  type SetSenderSecretResponse,
  type TestSenderResponse,
} from './gen/relay/v1/mail_pb.js';
import { toGrpcDefinition } from './grpc.js';
import { internalChannelCredentials, internalMetadata } from './internal-channel.js';

export interface CredentialsClient {
  getSmtpAuth(req: MessageInitShape<typeof GetSmtpAuthRequestSchema>, deadlineMs?: number): Promise<GetSmtpAuthResponse>;
  getGraphToken(req: MessageInitShape<typeof GetGraphTokenRequestSchema>, deadlineMs?: number): Promise<GetGraphTokenResponse>;
  /** AdminService.BeginConsent, forwarded by ingest. */
  beginConsent(req: MessageInitShape<typeof BeginConsentRequestSchema>, deadlineMs: number): Promise<BeginConsentResponse>;
  /** AdminService.TestSender, forwarded by ingest. */
  testSender(req: MessageInitShape<typeof TestSenderRequestSchema>, deadlineMs: number): Promise<TestSenderResponse>;
  /** AdminService.SetSenderSecret, forwarded by ingest. */
  setSenderSecret(req: MessageInitShape<typeof SetSenderSecretRequestSchema>, deadlineMs: number): Promise<SetSenderSecretResponse>;
  deleteSenderSecrets(req: MessageInitShape<typeof DeleteSenderSecretsRequestSchema>, deadlineMs: number): Promise<DeleteSenderSecretsResponse>;
  /** The consent redirect (`/oauth/callback`), forwarded by ingest. */
  completeConsent(req: MessageInitShape<typeof CompleteConsentRequestSchema>, deadlineMs: number): Promise<CompleteConsentResponse>;
  /** A sender's consent and token facts, for AdminService.GetSender. */
  getCredentialStatus(req: MessageInitShape<typeof GetCredentialStatusRequestSchema>, deadlineMs: number): Promise<GetCredentialStatusResponse>;
  /** AdminService.CreateWebhookSecret, forwarded by ingest. */
  createWebhookSecret(req: MessageInitShape<typeof CreateWebhookSecretRequestSchema>, deadlineMs: number): Promise<CreateWebhookSecretResponse>;
  /** The webhook-signature header of one delivery (ingest). */
  signWebhook(req: MessageInitShape<typeof SignWebhookRequestSchema>, deadlineMs: number): Promise<SignWebhookResponse>;
  close(): void;
}

const Ctor = makeGenericClientConstructor(toGrpcDefinition(CredentialsService), 'CredentialsService');

/** The client for the internal CredentialsService (mutual TLS or the internal token): senders' and ingest's. */
export function createCredentialsClient(address: string, auth: InternalAuth): CredentialsClient {
  const client = new Ctor(address, internalChannelCredentials(auth)) as Client & Record<string, (...args: unknown[]) => unknown>;
  function unary<I extends DescMessage, O>(method: string, schema: I, req: MessageInitShape<I>, deadlineMs: number): Promise<O> {
    const md = internalMetadata(auth);
    return new Promise((resolve, reject) => {
      client[method]!(create(schema, req) as MessageShape<I>, md, { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res: O) =>
        err ? reject(err) : resolve(res),
      );
    });
  }
  return {
    getSmtpAuth: (req, deadlineMs = 10_000) =>
      unary<typeof GetSmtpAuthRequestSchema, GetSmtpAuthResponse>('getSmtpAuth', GetSmtpAuthRequestSchema, req, deadlineMs),
    getGraphToken: (req, deadlineMs = 10_000) =>
      unary<typeof GetGraphTokenRequestSchema, GetGraphTokenResponse>('getGraphToken', GetGraphTokenRequestSchema, req, deadlineMs),
    beginConsent: (req, deadlineMs) =>
      unary<typeof BeginConsentRequestSchema, BeginConsentResponse>('beginConsent', BeginConsentRequestSchema, req, deadlineMs),
    testSender: (req, deadlineMs) => unary<typeof TestSenderRequestSchema, TestSenderResponse>('testSender', TestSenderRequestSchema, req, deadlineMs),
    setSenderSecret: (req, deadlineMs) =>
      unary<typeof SetSenderSecretRequestSchema, SetSenderSecretResponse>('setSenderSecret', SetSenderSecretRequestSchema, req, deadlineMs),
    deleteSenderSecrets: (req, deadlineMs) =>
      unary<typeof DeleteSenderSecretsRequestSchema, DeleteSenderSecretsResponse>('deleteSenderSecrets', DeleteSenderSecretsRequestSchema, req, deadlineMs),
    completeConsent: (req, deadlineMs) =>
      unary<typeof CompleteConsentRequestSchema, CompleteConsentResponse>('completeConsent', CompleteConsentRequestSchema, req, deadlineMs),
    getCredentialStatus: (req, deadlineMs) =>
      unary<typeof GetCredentialStatusRequestSchema, GetCredentialStatusResponse>('getCredentialStatus', GetCredentialStatusRequestSchema, req, deadlineMs),
    createWebhookSecret: (req, deadlineMs) =>
      unary<typeof CreateWebhookSecretRequestSchema, CreateWebhookSecretResponse>('createWebhookSecret', CreateWebhookSecretRequestSchema, req, deadlineMs),
    signWebhook: (req, deadlineMs) => unary<typeof SignWebhookRequestSchema, SignWebhookResponse>('signWebhook', SignWebhookRequestSchema, req, deadlineMs),
    close: () => client.close(),
  };
}
