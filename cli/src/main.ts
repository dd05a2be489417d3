#!/usr/bin/env node
/** `relay`: the operators' command line. Reads the environment and argv here only. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { describeError, EXIT } from './errors.js';
import { createProgram } from './program.js';
import { createRuntimeFactory } from './runtime.js';
import { readStackFile } from './target.js';

// Deprecation warnings speak to the developers of a dependency, not to an operator reading output:
// grpc-js passes an IP address as the TLS server name (DEP0123) on every TLS call to an IP.
process.noDeprecation = true;

const here = dirname(fileURLToPath(import.meta.url));
// In the repository: cli/dist → the root, where `npm run stack` leaves .relay/stack.json.
const repoRoot = join(here, '..', '..');
const version = (JSON.parse(readFileSync(join(here, '..', 'package.json'), 'utf8')) as { version: string }).version;

async function main(argv: string[]): Promise<number> {
  const env = process.env;
  const runtime = createRuntimeFactory({ env, stack: () => readStackFile(repoRoot) });
  const program = createProgram(runtime.forCommand, env, version);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the message (or the help) already.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const t = runtime.lastTarget();
    const { message, exitCode } = describeError(err, t ? { address: t.address, apiKeySet: Boolean(t.apiKey) } : undefined);
    process.stderr.write(`relay: ${message}\n`);
    return exitCode;
  } finally {
    runtime.close();
  }
}

// `relay tail | head -3`: the reader went away; that ends the command, it is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT.ok);
  throw err;
});

process.exitCode = await main(process.argv.slice(2));
