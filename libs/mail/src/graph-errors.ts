/**
 * Microsoft Graph's error answers, read from their JSON (`{"error":{"code","message","innerError"}}`)
 * and headers, never from message text. Used by the graph-sender and by TestSender.
 */
export interface GraphErrorAnswer {
  status: number;
  /** Graph's error code, e.g. ErrorSendAsDenied; the HTTP status text when the body has none. */
  code: string;
  message: string;
  /** Graph's `request-id` (header, or innerError), for Microsoft support and our status history. */
  requestId: string | undefined;
  /** Retry-After in milliseconds, when Graph sent one (seconds or an HTTP date). */
  retryAfterMs: number | undefined;
}

export function parseGraphError(status: number, bodyText: string, headers: { get(name: string): string | null }): GraphErrorAnswer {
  let code = `HTTP ${status}`;
  let message = '';
  let innerRequestId: string | undefined;
  try {
    const body = JSON.parse(bodyText) as { error?: { code?: unknown; message?: unknown; innerError?: { 'request-id'?: unknown } } };
    if (typeof body.error?.code === 'string' && body.error.code) code = body.error.code;
    if (typeof body.error?.message === 'string') message = body.error.message;
    const inner = body.error?.innerError?.['request-id'];
    if (typeof inner === 'string') innerRequestId = inner;
  } catch {
    message = bodyText.slice(0, 200).trim();
  }
  return { status, code, message, requestId: headers.get('request-id') ?? innerRequestId, retryAfterMs: parseRetryAfter(headers.get('retry-after')) };
}

/** `ErrorSendAsDenied: <message> (HTTP 403, request-id <id>)` — the text recorded as the outcome. */
export function describeGraphError(e: GraphErrorAnswer): string {
  const where = [`HTTP ${e.status}`, ...(e.requestId ? [`request-id ${e.requestId}`] : [])].join(', ');
  return `${e.code}${e.message ? `: ${e.message}` : ''} (${where})`;
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
