export * from './infra.js';
export * from './containers.js';
export * from './tls.js';
export * from './app-certificate.js';
export * from './net.js';
export * from './config.js';
export type { SmtpReply, SmtpSecurity } from './smtp-common.js';
export * from './provider-replies.js';
export * from './smtp-server.js';
export * from './smtp-sink.js';
export * from './service.js';
export * from './binaries.js';
export * from './proc.js';
export {
  describeExit,
  nodeArgsFor,
  readyPorts,
  serviceArgs,
  serviceMain,
  startProcess,
  telemetryRegister,
  type NodeArgsOptions,
  type ProcessSpec,
  type ServiceChild,
} from './service-process.js';
export { packageDir, repoRoot, serviceScript } from './paths.js';
export * from './identity-fake.js';
export * from './graph-fake.js';
export * from './otlp-receiver.js';
export { Changes, eventually } from './wait.js';
export * from './grpc-client.js';
export * from './grpc-flood.js';
export * from './nats-server.js';
export * from './redis-server.js';
export * from './dovecot.js';
export * from './relay.js';
export * from './smtp-client.js';
export * from './stack.js';
