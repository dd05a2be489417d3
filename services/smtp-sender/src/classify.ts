import { permanent, retryable, type DeliveryError } from '@relay/core';
import { diagnoseSmtpFailure, remedyFor, type SmtpConnectionErrorLike, type SmtpTarget } from '@relay/mail';

/** What nodemailer puts on the errors it throws. */
export interface SmtpErrorLike {
  message?: string;
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
}

/**
 * The SMTP server's answer decides: 4xx, timeouts and connection or TLS trouble are worth another
 * attempt; 5xx is final. The detail is the server's own reply text.
 */
export function classifySmtpError(err: SmtpErrorLike): DeliveryError {
  const reply = (err.response ?? '').trim();
  const detail = reply || `${err.code ? `${err.code}: ` : ''}${err.message ?? 'unknown error'}`;
  // The command tells a refused XOAUTH2 token from a refused password (Gmail answers both alike).
  const remedy = remedyFor(`${reply} ${err.message ?? ''} ${err.code ?? ''} ${err.command ?? ''}`);
  const opts = { cause: err, ...(remedy ? { remedy } : {}) };
  const code = err.responseCode;
  if (code !== undefined && code >= 500 && code < 600) return permanent(detail, opts);
  return retryable(detail, opts);
}

/**
 * As classifySmtpError, but a failure before the server answered names the host and port, the
 * cause in words and the remedy (DNS, a refused or silent port, a refused certificate).
 */
export async function classifySmtpFailure(err: SmtpErrorLike & SmtpConnectionErrorLike, smtp: SmtpTarget): Promise<DeliveryError> {
  const broken = await diagnoseSmtpFailure(err, smtp).catch(() => undefined);
  if (!broken) return classifySmtpError(err);
  return retryable(`cannot connect to the SMTP server at ${broken.host}: ${broken.cause}`, { cause: err, remedy: broken.remedy });
}
