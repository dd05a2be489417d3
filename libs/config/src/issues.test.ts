import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { closest, formatIssues, secretFields } from './issues.js';

// A schema unlike relay.yaml's: keys added later get the same messages without special cases.
const token = z.string().register(secretFields);
const schema = z.strictObject({
  limits: z.strictObject({ daily_cap: z.number().int().positive().optional(), window: z.string().default('24h') }).optional(),
  routes: z.array(z.strictObject({ name: z.string(), mode: z.enum(['direct', 'queued']), token: token.optional() })).default([]),
  tags: z.record(z.string(), z.strictObject({ colour: z.string() })).optional(),
});

function format(doc: unknown): string {
  const result = schema.safeParse(doc);
  if (result.success) throw new Error('expected issues');
  return formatIssues(result.error.issues, doc, schema);
}

describe('formatIssues', () => {
  it('treats nested, listed and mapped keys alike', () => {
    expect(format({ limits: { daly_cap: 5 } })).toBe('limits.daly_cap: unknown key; did you mean "daily_cap"?');
    expect(format({ limits: { daily_cap: '5' } })).toBe('limits.daily_cap: expected a number, got the string "5"');
    expect(
      format({
        routes: [
          { name: 'a', mode: 'direct' },
          { name: 'b', mode: 'later' },
        ],
      }),
    ).toBe('routes[1].mode: must be one of direct, queued (got "later")');
    expect(format({ routes: [{ nme: 'a', mode: 'queued' }] })).toBe('routes[0].nme: unknown key; did you mean "name"?');
    expect(format({ tags: { red: { color: 'red' } } })).toBe('tags.red.color: unknown key; did you mean "colour"?');
    expect(format({ routes: [{ name: 'a', mode: 'queued', token: 1234 }] })).toBe('routes[0].token: expected a string, got a number');
    expect(format('text')).toBe('(top level): expected a mapping (key: value), got the string "text"');
  });
});

describe('closest', () => {
  it('counts a swap of neighbours as one edit and ignores case and dashes', () => {
    expect(closest('prot', ['host', 'pool', 'port'])).toBe('port');
    expect(closest('Client-Secret', ['client_id', 'client_secret'])).toBe('client_secret');
    expect(closest('hostname', ['host', 'port'])).toBeUndefined();
    expect(closest('x', [])).toBeUndefined();
  });
});
