import { create, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import type { InternalAuth } from '@relay/core';
import {
  CredentialsService,
  GetGraphTokenRequestSchema,
  GetSmtpAuthRequestSchema,
  type GetGraphTokenResponse,
  type GetSmtpAuthResponse,
} from './gen/relay/internal/v1/internal_pb.js';
import { toGrpcDefinition } from './grpc.js';
import { internalChannelCredentials, internalMetadata } from './internal-channel.js';

export interface CredentialsClient {
  getSmtpAuth(req: MessageInitShape<typeof GetSmtpAuthRequestSchema>, deadlineMs?: number): Promise<GetSmtpAuthResponse>;
  getGraphToken(req: MessageInitShape<typeof GetGraphTokenRequestSchema>, deadlineMs?: number): Promise<GetGraphTokenResponse>;
  close(): void;
}

const Ctor = makeGenericClientConstructor(toGrpcDefinition(CredentialsService), 'CredentialsService');

/** The sender services' client for the internal CredentialsService (mutual TLS or the internal token). */
export function createCredentialsClient(address: string, auth: InternalAuth): CredentialsClient {
  const client = new Ctor(address, internalChannelCredentials(auth)) as Client & Record<string, Function>;
  function unary<I extends DescMessage, O>(method: string, schema: I, req: MessageInitShape<I>, deadlineMs: number): Promise<O> {
    const md = internalMetadata(auth);
    return new Promise((resolve, reject) => {
      client[method]!(create(schema, req) as MessageShape<I>, md, { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res: O) => (err ? reject(err) : resolve(res)));
    });
  }
  return {
    getSmtpAuth: (req, deadlineMs = 10_000) => unary<typeof GetSmtpAuthRequestSchema, GetSmtpAuthResponse>('getSmtpAuth', GetSmtpAuthRequestSchema, req, deadlineMs),
    getGraphToken: (req, deadlineMs = 10_000) => unary<typeof GetGraphTokenRequestSchema, GetGraphTokenResponse>('getGraphToken', GetGraphTokenRequestSchema, req, deadlineMs),
    close: () => client.close(),
  };
}
