import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import { grpcCode, grpcCodeName, grpcDetails } from '@relay/client';
import { MessageState, type GetMessageResponse } from '@relay/proto';

export const WAIT_DEFAULTS = {
  timeoutMs: 60_000,
  intervalMs: 500,
} as const;

export function isFinal(state: MessageState): boolean {
  return state === MessageState.SENT || state === MessageState.FAILED || state === MessageState.BOUNCED;
}

/** What went wrong, in the words a newcomer needs, from a grpc-js error: its status name first. */
export function describeSendError(err: unknown, ctx: { address: string; sender: string; apiKeySet: boolean }): string {
  const code = grpcCode(err);
  if (code === undefined) return err instanceof Error ? err.message : String(err);
  return `${grpcCodeName(code)}: ${explain(code, grpcDetails(err), ctx)}`;
}

function explain(code: number, details: string | undefined, ctx: { address: string; sender: string; apiKeySet: boolean }): string {
  const said = details ? ` (the relay said: ${details})` : '';
  switch (code) {
    case status.UNAUTHENTICATED:
      return ctx.apiKeySet
        ? `the API key was refused: set RELAY_API_KEY (or --api-key) to a key from the relay config${said}`
        : `no API key: set RELAY_API_KEY (or --api-key) to a key from the relay config${said}`;
    case status.PERMISSION_DENIED:
      // The relay refuses an undefined sender and one the client may not use alike: name both causes.
      return `this API key may not send as "${ctx.sender}": a sender with that id must be defined in the relay config and listed in this client's senders; or pick another with --sender${said}`;
    case status.INVALID_ARGUMENT:
      return `the relay refused the message: ${details ?? 'invalid argument'}`;
    case status.ALREADY_EXISTS:
      return `that idempotency key was already used for a different message${said}`;
    case status.UNAVAILABLE:
      return `cannot reach the relay at ${ctx.address}: is it running (npm run stack), is the address right? Nothing was stored; it is safe to retry${said}`;
    case status.DEADLINE_EXCEEDED:
      return `the relay at ${ctx.address} did not answer in time${said}`;
    case status.NOT_FOUND:
      return `not found${said}`;
    default:
      return details ?? 'no details';
  }
}

/**
 * Reads the message until it is SENT or FAILED, reporting each new state. Right after SendMail the
 * status may not be readable yet, so NOT_FOUND counts as "not yet". Returns undefined on timeout.
 */
export async function waitForOutcome(
  getMessage: (id: string) => Promise<GetMessageResponse>,
  messageId: string,
  opts: { timeoutMs?: number; intervalMs?: number; onState?: (res: GetMessageResponse) => void } = {},
): Promise<GetMessageResponse | undefined> {
  const deadline = Date.now() + (opts.timeoutMs ?? WAIT_DEFAULTS.timeoutMs);
  let last: MessageState | undefined;
  for (;;) {
    let res: GetMessageResponse | undefined;
    try {
      res = await getMessage(messageId);
    } catch (err) {
      if (grpcCode(err) !== status.NOT_FOUND) throw err;
    }
    if (res) {
      if (res.state !== last) opts.onState?.(res);
      last = res.state;
      if (isFinal(res.state)) return res;
    }
    if (Date.now() >= deadline) return undefined;
    await sleep(Math.min(opts.intervalMs ?? WAIT_DEFAULTS.intervalMs, Math.max(0, deadline - Date.now())));
  }
}
