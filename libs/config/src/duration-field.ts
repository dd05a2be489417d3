import { z } from 'zod';
import { parseDuration } from '@relay/core';

/** A relay.yaml duration (`30s`, `5m`, `1h`, or milliseconds as a number), in milliseconds. */
export const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
