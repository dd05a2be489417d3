import { credentials as grpcCredentials, Metadata, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import type { InternalAuth } from '@relay/core';

/** Channel credentials for calling the credentials service: mutual TLS, or plaintext with a token. */
export function internalChannelCredentials(auth: InternalAuth): ChannelCredentials {
  if (auth.kind === 'mtls') return grpcCredentials.createSsl(Buffer.from(auth.ca), Buffer.from(auth.key), Buffer.from(auth.cert));
  return grpcCredentials.createInsecure();
}

/** Metadata for one internal call: the bearer token in token mode, nothing with mutual TLS. */
export function internalMetadata(auth: InternalAuth): Metadata {
  const md = new Metadata();
  if (auth.kind === 'token') md.set('authorization', `Bearer ${auth.token}`);
  return md;
}

/** The credentials service's server credentials: with mutual TLS, a client without a certificate from the CA cannot connect. */
export function internalServerCredentials(auth: InternalAuth): ServerCredentials {
  if (auth.kind === 'mtls')
    return ServerCredentials.createSsl(Buffer.from(auth.ca), [{ cert_chain: Buffer.from(auth.cert), private_key: Buffer.from(auth.key) }], true);
  return ServerCredentials.createInsecure();
}
