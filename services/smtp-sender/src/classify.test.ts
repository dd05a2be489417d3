import { describe, expect, it } from 'vitest';
import { classifySmtpError } from './classify.js';

describe('classifySmtpError', () => {
  it('fails at once on a 5xx reply, keeping the server text and a remedy', () => {
    const e = classifySmtpError({
      code: 'EAUTH',
      responseCode: 535,
      response: '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
    });
    expect(e.retryable).toBe(false);
    expect(e.message).toBe('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.');
    expect(e.remedy).toMatch(/Authenticated SMTP/);
  });
  it("tells Gmail's refused password from its refused XOAUTH2 token by the command", () => {
    const response =
      '535-5.7.8 Username and Password not accepted. For more information, go to\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1sm1 - gsmtp';
    const base = { code: 'EAUTH', responseCode: 535, response, message: `Invalid login: ${response}` };
    expect(classifySmtpError({ ...base, command: 'AUTH PLAIN' }).remedy).toMatch(/^Gmail refused the user name or password/);
    expect(classifySmtpError({ ...base, command: 'AUTH XOAUTH2' }).remedy).toMatch(/^The access token was refused/);
  });
  it('retries 4xx replies', () => {
    const e = classifySmtpError({ code: 'EENVELOPE', responseCode: 451, response: '451 4.7.500 Server busy' });
    expect(e.retryable).toBe(true);
    expect(e.message).toBe('451 4.7.500 Server busy');
  });
  it('retries connection errors and timeouts, describing them', () => {
    expect(classifySmtpError({ code: 'ECONNECTION', message: 'connect ECONNREFUSED 127.0.0.1:1' })).toMatchObject({
      retryable: true,
      message: 'ECONNECTION: connect ECONNREFUSED 127.0.0.1:1',
    });
    expect(classifySmtpError({ code: 'ETIMEDOUT', message: 'Greeting never received' }).retryable).toBe(true);
    expect(classifySmtpError({ code: 'ESOCKET', message: 'self-signed certificate' }).remedy).toMatch(/ca_file/);
  });
});
