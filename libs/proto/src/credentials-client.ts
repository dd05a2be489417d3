import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { credentials as grpcCredentials, makeGenericClientConstructor, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { CredentialsService, GetSmtpAuthRequestSchema, type GetSmtpAuthResponse } from './gen/relay/internal/v1/internal_pb.js';
import { toGrpcDefinition } from './grpc.js';

export interface CredentialsClient {
  getSmtpAuth(req: MessageInitShape<typeof GetSmtpAuthRequestSchema>, deadlineMs?: number): Promise<GetSmtpAuthResponse>;
  close(): void;
}

const Ctor = makeGenericClientConstructor(toGrpcDefinition(CredentialsService), 'CredentialsService');

/** The sender services' client for the internal CredentialsService, authenticated with the internal token. */
export function createCredentialsClient(address: string, token: string): CredentialsClient {
  const client = new Ctor(address, grpcCredentials.createInsecure()) as Client & Record<string, Function>;
  return {
    getSmtpAuth(req, deadlineMs = 10_000) {
      const md = new Metadata();
      md.set('authorization', `Bearer ${token}`);
      return new Promise((resolve, reject) => {
        client.getSmtpAuth!(create(GetSmtpAuthRequestSchema, req), md, { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res: GetSmtpAuthResponse) =>
          err ? reject(err) : resolve(res),
        );
      });
    },
    close: () => client.close(),
  };
}
