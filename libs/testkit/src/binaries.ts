import { existsSync } from 'node:fs';

type Env = Record<string, string | undefined>;

/**
 * Whether a suite that needs the program `bin` (one outside the repository: nats-server, swaks)
 * runs: when it is installed, and always in CI (`CI=true`), where a missing one must fail the
 * suite rather than skip it silently. Pair with requireBinary in the suite for a clear failure.
 */
export function runsWith(bin: string | undefined, env: Env = process.env): boolean {
  return (bin !== undefined && existsSync(bin)) || env.CI === 'true';
}

/** The program's path; throws naming the program and how to install it when it is missing. */
export function requireBinary(bin: string | undefined, install: string): string {
  if (bin === undefined || !existsSync(bin)) throw new Error(`${bin ?? 'a required program'} is missing: ${install}`);
  return bin;
}
