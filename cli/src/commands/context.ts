import type { Command } from 'commander';
import { type RelayContext, findContext, writeContextsFile } from '../contexts.js';
import { UsageError } from '../errors.js';
import { createOutput, isStructured, parseOutputFormat, printTable, printValue } from '../output.js';
import { readStdin } from '../runtime.js';
import { loadContexts } from '../target.js';

type Env = Record<string, string | undefined>;

export function registerContext(program: Command, env: Env): void {
  const context = program
    .command('context')
    .alias('ctx')
    .description('named relays to talk to, kept in $XDG_CONFIG_HOME/campus-relay/config.yaml (~/.config/campus-relay/config.yaml)');
  const output = (cmd: Command) => createOutput(parseOutputFormat(cmd.optsWithGlobals<{ output: string }>().output));

  context
    .command('list')
    .alias('ls')
    .description('list contexts; * marks the current one')
    .action((_opts, cmd: Command) => {
      const o = output(cmd);
      const { path, file } = loadContexts(env);
      if (isStructured(o.format)) return printValue(o, redact(file));
      if (file.contexts.length === 0) return o.err(`no contexts in ${path}; add one with: relay context set NAME --address HOST:PORT`);
      printTable(
        o,
        ['current', 'name', 'address', 'api-key', 'tls'],
        file.contexts.map((c) => [
          c.name === file['current-context'] ? '*' : '',
          c.name,
          c.address,
          c.api_key_env ? `env ${c.api_key_env}` : c.api_key ? '(in file)' : '-',
          c.ca_file ? `ca ${c.ca_file}` : c.tls ? 'yes' : 'no',
        ]),
      );
    });

  context
    .command('current')
    .description('print the current context')
    .action((_opts, cmd: Command) => {
      const { path, file } = loadContexts(env);
      if (!file['current-context']) throw new UsageError(`no current context in ${path}; choose one with: relay context use NAME`);
      output(cmd).out(file['current-context']);
    });

  context
    .command('use')
    .argument('<name>', 'context name')
    .description('make a context the current one')
    .action((name: string, _opts, cmd: Command) => {
      const { path, file } = loadContexts(env);
      findContext(file, name, path);
      file['current-context'] = name;
      writeContextsFile(path, file);
      output(cmd).out(`current context: ${name}`);
    });

  context
    .command('set')
    .argument('<name>', 'context name (created when new)')
    .option('--api-key-env <var>', 'read the API key from this environment variable when the context is used')
    .option('--api-key-stdin', 'store the API key read from stdin in the file (kept 0600)')
    .option('--plaintext', 'no TLS (clears --tls and --ca-file)')
    .option('--use', 'also make it the current context')
    .description('create or change a context; the global --address, --tls and --ca-file set its address and TLS')
    .addHelpText('after', '\nExample: relay context set prod --address relay.campus.example:443 --ca-file /etc/relay/ca.pem --api-key-env RELAY_PROD_KEY --use')
    .action(async (name: string, _opts, cmd: Command) => {
      // --address, --tls and --ca-file are global options: commander hands them to the program.
      const opts = cmd.optsWithGlobals<{
        address?: string;
        apiKeyEnv?: string;
        apiKeyStdin?: boolean;
        caFile?: string;
        tls?: boolean;
        plaintext?: boolean;
        use?: boolean;
      }>();
      const { path, file } = loadContexts(env);
      if (opts.plaintext && (opts.tls || opts.caFile)) throw new UsageError('give --plaintext or --tls / --ca-file, not both');
      if (opts.apiKeyEnv && opts.apiKeyStdin) throw new UsageError('give --api-key-env or --api-key-stdin, not both');
      let ctx = file.contexts.find((c) => c.name === name);
      if (!ctx) {
        if (!opts.address) throw new UsageError(`context ${name} is new: --address is required`);
        ctx = { name, address: opts.address };
        file.contexts.push(ctx);
      }
      if (opts.address) ctx.address = opts.address;
      if (opts.apiKeyEnv) {
        ctx.api_key_env = opts.apiKeyEnv;
        delete ctx.api_key;
      }
      if (opts.apiKeyStdin) {
        const key = (await readStdin(64 * 1024, '--api-key-stdin')).trim();
        if (!key) throw new UsageError('--api-key-stdin: no key on stdin');
        ctx.api_key = key;
        delete ctx.api_key_env;
      }
      if (opts.caFile) ctx.ca_file = opts.caFile;
      if (opts.tls) ctx.tls = true;
      if (opts.plaintext) {
        delete ctx.tls;
        delete ctx.ca_file;
      }
      if (opts.use || file.contexts.length === 1) file['current-context'] = name;
      writeContextsFile(path, file);
      output(cmd).out(`context ${name} saved in ${path}${file['current-context'] === name ? ' (current)' : ''}`);
    });

  context
    .command('delete')
    .alias('rm')
    .argument('<name>', 'context name')
    .description('remove a context')
    .action((name: string, _opts, cmd: Command) => {
      const { path, file } = loadContexts(env);
      findContext(file, name, path);
      file.contexts = file.contexts.filter((c) => c.name !== name);
      if (file['current-context'] === name) delete file['current-context'];
      writeContextsFile(path, file);
      output(cmd).out(`context ${name} deleted`);
    });
}

function redact(file: { 'current-context'?: string; contexts: RelayContext[] }) {
  return { ...file, contexts: file.contexts.map((c) => (c.api_key ? { ...c, api_key: '(set)' } : c)) };
}
