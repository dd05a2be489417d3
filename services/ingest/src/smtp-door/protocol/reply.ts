/**
 * A refusal a hook throws: the reply code and its text, which starts with the RFC 3463 enhanced
 * status code (`550`, `5.7.1 Sender address ...`). The protocol layer writes it as it is; a text
 * without an enhanced code gets the generic one of its class (`5.0.0`), so every reply carries
 * exactly one.
 */
export class SmtpReply extends Error {
  override readonly name = 'SmtpReply';
  constructor(
    readonly code: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSmtpReply(err: unknown): err is SmtpReply {
  return err instanceof SmtpReply;
}

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}(?: |$)/;

/** One reply line, CRLF included; line breaks in `text` become spaces (a reply is one line). */
export function replyLine(code: number, text: string): string {
  const flat = text.replace(/[\r\n]+/g, ' ');
  // The greeting, EHLO/HELO and 3xx replies carry no enhanced code (RFC 2034).
  if (code >= 300 && code < 400) return `${code} ${flat}\r\n`;
  return ENHANCED.test(flat) ? `${code} ${flat}\r\n` : `${code} ${Math.floor(code / 100)}.0.0 ${flat}\r\n`;
}
