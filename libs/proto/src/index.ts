export * from './gen/relay/v1/mail_pb.js';
export * from './gen/relay/internal/v1/internal_pb.js';
export { toGrpcDefinition } from './grpc.js';
export { answeredByRelay, toGrpcError } from './status.js';
export { createCredentialsClient, type CredentialsClient } from './credentials-client.js';
export * from './internal-channel.js';
export { bindGrpc, unary, type UnaryOptions } from './grpc-server.js';
