export { SmtpReply, isSmtpReply } from './reply.js';
export { createSmtpProtocolServer, type SmtpProtocolServer } from './server.js';
export type { SmtpAddress, SmtpCredentials, SmtpHooks, SmtpMessage, SmtpProtocolOptions, SmtpSession } from './types.js';
