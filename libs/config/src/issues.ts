import { z } from 'zod';

/**
 * Schemas whose values are secrets: an error about them never shows the value. Register a schema
 * here (`secretFields.add(s)`) and every key that uses it is covered.
 */
export const secretFields = z.registry();

type Path = ReadonlyArray<PropertyKey>;

/** `senders[0].smtp.port`, as operators read it. */
export function keyPath(path: Path): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(top level)';
}

/**
 * One line per problem, joined with "; ", for any schema built from zod objects, lists and unions.
 * Zod reports a missing key and a wrong type alike and does not keep the value it refused, so the
 * raw document `doc` says which one it was; `schema` (the one parsed) gives the allowed keys.
 */
export function formatIssues(issues: readonly z.core.$ZodIssue[], doc: unknown, schema: z.ZodType): string {
  const typos = new Map<string, string>();
  const unknown = new Map<z.core.$ZodIssue, string[]>();
  for (const i of issues) {
    if (i.code !== 'unrecognized_keys') continue;
    const object = valueAt(doc, i.path).value;
    const present = isMapping(object) ? Object.keys(object) : [];
    const allowed = allowedKeys(schemasAt(schema, doc, i.path));
    unknown.set(
      i,
      i.keys.map((key) => {
        const where = i.path.length ? `${keyPath(i.path)}.${key}` : key;
        // A key already written is not what a misspelt one meant.
        const guess = closest(
          key,
          allowed.filter((k) => !present.includes(k)),
        );
        if (guess) typos.set(keyPath([...i.path, guess]), key);
        return guess
          ? `${where}: unknown key; did you mean "${guess}"?`
          : `${where}: unknown key${allowed.length ? ` (allowed keys: ${allowed.join(', ')})` : ''}`;
      }),
    );
  }
  const lines = issues.flatMap((i) => {
    const unknownKeys = unknown.get(i);
    if (unknownKeys) return unknownKeys;
    const at = valueAt(doc, i.path);
    // The misspelt key's line already says what to do about this "required".
    if (!at.present && typos.has(keyPath(i.path))) return [];
    return [`${keyPath(i.path)}: ${describeIssue(i, at, isSecret(schemasAt(schema, doc, i.path)))}`];
  });
  return [...new Set(lines)].join('; ');
}

function describeIssue(i: z.core.$ZodIssue, at: { present: boolean; value: unknown }, secret: boolean): string {
  if (i.code === 'invalid_type') {
    if (!at.present) return 'required';
    return `expected ${EXPECTED[i.expected] ?? i.expected}, got ${describeValue(at.value, secret)}`;
  }
  const choices = i.code === 'invalid_value' ? i.values : i.code === 'invalid_union' && 'options' in i ? i.options : undefined;
  if (choices && choices.length > 0) {
    const list = choices.map(String).join(', ');
    if (!at.present) return `required, one of ${list}`;
    const got = secret ? '' : ` (got ${shortValue(at.value)})`;
    return choices.length === 1 ? `must be ${list}${got}` : `must be one of ${list}${got}`;
  }
  if (i.code === 'invalid_union' && i.errors.length > 0 && i.errors.every((e) => e.length === 1 && e[0]!.code === 'invalid_type')) {
    if (!at.present) return 'required';
    const expected = i.errors.map((e) => (e[0] as z.core.$ZodIssueInvalidType).expected);
    return `expected ${expected.map((e) => EXPECTED[e] ?? e).join(' or ')}, got ${describeValue(at.value, secret)}`;
  }
  return i.message;
}

const EXPECTED: Partial<Record<string, string>> = {
  number: 'a number',
  int: 'a whole number',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  tuple: 'a list',
  object: 'a mapping (key: value)',
  record: 'a mapping (key: value)',
};

function describeValue(v: unknown, secret: boolean): string {
  if (v === null || v === undefined) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (secret) return `a ${typeof v}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  return `the ${typeof v} ${String(v)}`;
}

function shortValue(v: unknown): string {
  if (v === null || v === undefined) return 'an empty value';
  if (typeof v === 'object') return Array.isArray(v) ? 'a list' : 'a mapping';
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function valueAt(doc: unknown, path: Path): { present: boolean; value: unknown } {
  let v = doc;
  for (const p of path) {
    if (typeof p === 'number' ? !Array.isArray(v) || p >= v.length : !isMapping(v) || !Object.hasOwn(v, p)) return { present: false, value: undefined };
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return { present: true, value: v };
}

/** The schemas that may apply at `path`, looking through wrappers, lists and unions. */
function schemasAt(root: z.core.$ZodType, doc: unknown, path: Path): z.core.$ZodType[] {
  let current = [root];
  for (let n = 0; n <= path.length; n++) {
    const here = valueAt(doc, path.slice(0, n)).value;
    const flat = current.flatMap((s) => unwrap(s, here));
    if (n === path.length) return flat;
    const p = path[n]!;
    current = flat.flatMap((s) => {
      if (s instanceof z.ZodObject && typeof p === 'string' && p in s.shape) return [s.shape[p] as z.core.$ZodType];
      if (s instanceof z.ZodArray && typeof p === 'number') return [s.element as z.core.$ZodType];
      if (s instanceof z.ZodRecord) return [s.valueType as z.core.$ZodType];
      return [];
    });
  }
  return current;
}

/** The schema itself and what it wraps, down to objects, lists and plain values. */
function unwrap(s: z.core.$ZodType, value: unknown): z.core.$ZodType[] {
  const out = [s];
  if (
    s instanceof z.ZodOptional ||
    s instanceof z.ZodNullable ||
    s instanceof z.ZodDefault ||
    s instanceof z.ZodPrefault ||
    s instanceof z.ZodReadonly ||
    s instanceof z.ZodCatch
  ) {
    out.push(...unwrap(s.unwrap() as z.core.$ZodType, value));
  } else if (s instanceof z.ZodPipe) {
    out.push(...unwrap(s.in as z.core.$ZodType, value));
  } else if (s instanceof z.ZodUnion) {
    let options = s.options as readonly z.core.$ZodType[];
    if (s instanceof z.ZodDiscriminatedUnion && isMapping(value)) {
      const chosen = options.filter((o) => o instanceof z.ZodObject && literalValues(o.shape[s.def.discriminator]).includes(value[s.def.discriminator]));
      if (chosen.length > 0) options = chosen;
    }
    out.push(...options.flatMap((o) => unwrap(o, value)));
  }
  return out;
}

function literalValues(s: unknown): unknown[] {
  return s instanceof z.ZodLiteral ? [...s.values] : [];
}

function allowedKeys(schemas: z.core.$ZodType[]): string[] {
  return [...new Set(schemas.flatMap((s) => (s instanceof z.ZodObject ? Object.keys(s.shape) : [])))];
}

function isSecret(schemas: z.core.$ZodType[]): boolean {
  return schemas.some((s) => secretFields.has(s));
}

/** The allowed key nearest to a misspelt one, if it is near enough to be the likely intent. */
export function closest(key: string, allowed: readonly string[]): string | undefined {
  const wanted = key.toLowerCase().replaceAll('-', '_');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const d = editDistance(wanted, candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= Math.max(1, Math.floor(wanted.length / 3)) ? best : undefined;
}

// Optimal string alignment: a swap of two neighbours ("prot" for "port") is one edit, not two.
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}
