export * from './infra.js';
export * from './tls.js';
export * from './net.js';
export * from './config.js';
export type { SmtpReply, SmtpSecurity } from './smtp-common.js';
export * from './smtp-server.js';
export * from './smtp-sink.js';
export * from './service.js';
export { packageDir, repoRoot, serviceScript } from './paths.js';
