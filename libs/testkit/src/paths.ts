import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

// src/ (under vitest) and dist/ (built) both sit one level below the package, so the same
// relative URL finds the package and the repository from either.
export const packageDir = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

/** Where a built service's entry point lives: `<repo>/services/<name>/dist/main.js`. */
export function serviceScript(name: string): string {
  return join(repoRoot, 'services', name, 'dist', 'main.js');
}
