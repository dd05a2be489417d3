export { createRelayClient, DEFAULT_MAX_MESSAGE_BYTES } from './client.js';
export type { CallOptions, RelayClient, RelayClientOptions, StreamMethod, UnaryMethod } from './client.js';
export { grpcCode, grpcCodeName, grpcDetails } from './errors.js';
