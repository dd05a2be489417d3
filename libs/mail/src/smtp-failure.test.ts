import { describe, expect, it } from 'vitest';
import { diagnoseSmtpFailure, type SmtpTarget } from './smtp-failure.js';
import { describeCertificateProblem } from './tls-failure.js';

const smtp = (over: Partial<SmtpTarget> = {}): SmtpTarget => ({ host: 'smtp.campus.example', port: 587, security: 'starttls', ...over });

describe('diagnoseSmtpFailure', () => {
  it('leaves a server reply to the reply', async () => {
    expect(await diagnoseSmtpFailure({ code: 'EAUTH', responseCode: 535, message: 'Invalid login' }, smtp())).toBeUndefined();
  });

  it('tells port 465 without TLS from a silent server', async () => {
    const greeting = { code: 'ETIMEDOUT', timeoutType: 'GREETING_TIMEOUT', message: 'Greeting never received' };
    expect(await diagnoseSmtpFailure(greeting, smtp({ port: 465 }))).toEqual({
      host: 'smtp.campus.example:465',
      cause: 'connected, but the server sent no greeting',
      remedy: 'port 465 expects TLS from the first byte: set security: tls',
    });
    expect(await diagnoseSmtpFailure({ code: 'ETIMEDOUT', timeoutType: 'CONNECT_TIMEOUT', message: 'Connection timeout' }, smtp({ port: 25 }))).toEqual({
      host: 'smtp.campus.example:25',
      cause: 'no answer (connection timed out)',
      remedy: 'allow outbound TCP 25 from the relay to smtp.campus.example (firewall; many networks block port 25)',
    });
  });

  it('names a TLS mode that does not match the port', async () => {
    const broken = await diagnoseSmtpFailure(
      { code: 'ESOCKET', originalCode: 'ERR_SSL_WRONG_VERSION_NUMBER', message: 'C0F7:error:0A00010B:SSL routines:ssl3_get_record:wrong version number' },
      smtp(),
    );
    expect(broken?.cause).toBe('TLS failed: the server does not speak TLS the way security: says');
  });
});

describe('describeCertificateProblem', () => {
  const cert = { subjectaltname: 'DNS:smtp.campus.example', valid_from: 'Jan  1 00:00:00 2027 GMT', issuer: { CN: 'Campus Issuing CA' } } as never;
  it('says it in words', () => {
    expect(describeCertificateProblem('CERT_NOT_YET_VALID', cert, 'smtp.campus.example').cause).toBe(
      'the certificate for smtp.campus.example is valid only from 2027-01-01',
    );
    expect(describeCertificateProblem('SELF_SIGNED_CERT_IN_CHAIN', cert, 'smtp.campus.example').cause).toBe(
      'the certificate for smtp.campus.example comes from a root CA the relay does not trust ("Campus Issuing CA")',
    );
    expect(describeCertificateProblem('CERT_REVOKED', undefined, 'smtp.campus.example')).toEqual({
      kind: 'other',
      names: [],
      cause: 'the certificate was refused (CERT_REVOKED)',
    });
  });
});
