import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The folder under the repository root where the stack keeps its local files (git-ignored). */
export const STACK_DIR = '.relay';

/** What `npm run stack` tells `npm run send` about the running stack, in `.relay/stack.json`. */
export interface StackInfo {
  /** host:port of ingest's gRPC. */
  address: string;
  /** The demo client's key (demo mode only). */
  apiKey?: string;
  /** The demo sender (demo mode only). */
  sender?: string;
  /** Where the capture SMTP server writes messages (demo mode only). */
  captureDir?: string;
  /** PEM file of the CA that ingest's TLS certificate chains to, when gRPC is served over TLS. */
  tlsCaFile?: string;
}

export function stackFilePath(root: string): string {
  return join(root, STACK_DIR, 'stack.json');
}

/** The stack file, or undefined when there is none. A broken file is an error naming it. */
export function readStackFile(root: string): StackInfo | undefined {
  const path = stackFilePath(root);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${path}: not valid JSON; delete it, or run npm run stack again`);
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  if (typeof o.address !== 'string' || !o.address) throw new Error(`${path}: no "address"; delete it, or run npm run stack again`);
  const str = (k: string) => (typeof o[k] === 'string' && o[k] ? (o[k] as string) : undefined);
  const info: StackInfo = { address: o.address };
  const apiKey = str('apiKey');
  const sender = str('sender');
  const captureDir = str('captureDir');
  const tlsCaFile = str('tlsCaFile');
  if (apiKey) info.apiKey = apiKey;
  if (sender) info.sender = sender;
  if (captureDir) info.captureDir = captureDir;
  if (tlsCaFile) info.tlsCaFile = tlsCaFile;
  return info;
}

export function writeStackFile(root: string, info: StackInfo): string {
  const path = stackFilePath(root);
  mkdirSync(join(root, STACK_DIR), { recursive: true });
  // It may hold an API key.
  writeFileSync(path, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  return path;
}

export function removeStackFile(root: string): void {
  rmSync(stackFilePath(root), { force: true });
}
