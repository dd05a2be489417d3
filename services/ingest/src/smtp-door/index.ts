export { createSmtpDoor, type SmtpDoor, type SmtpDoorOptions } from './smtp-door.js';
export { smtpDoorTls } from './tls.js';
