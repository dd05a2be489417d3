import { readFile } from 'node:fs/promises';
import type { JsonObject } from '@bufbuild/protobuf';
import { parseAllDocuments } from 'yaml';
import { CliError, EXIT, UsageError } from './errors.js';
import { readStdin } from './runtime.js';

const MAX_MANIFEST_BYTES = 1024 * 1024;

/**
 * Reads `-f FILE` (or `-f -` for stdin): one or more relay.yaml-style entries. A file may hold one
 * entry, a list of them, `<listKey>: [...]` as in relay.yaml, or several YAML documents.
 * `idKey` ("id" for senders, "name" for clients) must be in each entry.
 */
export async function readManifest(path: string, listKey: string, idKey: string): Promise<Array<{ id: string; spec: JsonObject }>> {
  let text: string;
  if (path === '-') {
    text = await readStdin(MAX_MANIFEST_BYTES, '-f -');
  } else {
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new CliError(`-f ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.usage, { cause: err });
    }
  }
  if (text.length > MAX_MANIFEST_BYTES) throw new UsageError(`-f ${path}: larger than 1 MiB`);
  const entries: unknown[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new UsageError(`-f ${path}: not valid YAML: ${doc.errors[0]?.message.split('\n')[0]}`);
    const v: unknown = doc.toJS();
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) entries.push(...v);
    else if (typeof v === 'object' && listKey in v && Object.keys(v).length === 1) {
      const list = (v as Record<string, unknown>)[listKey];
      if (!Array.isArray(list)) throw new UsageError(`-f ${path}: ${listKey}: expected a list`);
      entries.push(...list);
    } else entries.push(v);
  }
  if (entries.length === 0) throw new UsageError(`-f ${path}: no entries in it`);
  return entries.map((e, i) => {
    const at = entries.length > 1 ? `-f ${path}: entry ${i + 1}` : `-f ${path}`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new UsageError(`${at}: expected a mapping (a ${listKey} entry of relay.yaml)`);
    const id = (e as Record<string, unknown>)[idKey];
    if (typeof id !== 'string' || !id) throw new UsageError(`${at}: "${idKey}" is required`);
    return { id, spec: e as JsonObject };
  });
}
