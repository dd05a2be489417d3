import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { SenderConfig } from '@relay/config';
import type { Envelope } from '@relay/proto';

/** The longest a message is parked before the scheduler looks at it again. */
export const MAX_PARK_MS = 60 * 60_000;

export type Decision = { action: 'dispatch'; transport: SenderConfig['transport'] } | { action: 'wait'; ms: number };

/** What to do with a submitted message now: hand it to its transport, or wait for its time. */
export function decide(env: Envelope, sender: SenderConfig, now: number): Decision {
  const times = [env.sendAt, env.notBefore].filter((t) => t !== undefined).map((t) => timestampDate(t).getTime());
  const due = Math.max(0, ...times);
  if (due > now) return { action: 'wait', ms: Math.min(due - now, MAX_PARK_MS) };
  return { action: 'dispatch', transport: sender.transport };
}
