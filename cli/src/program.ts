import { Command, Option } from 'commander';
import { registerClients, registerKeys } from './commands/clients.js';
import { registerContext } from './commands/context.js';
import { registerMessages } from './commands/messages.js';
import { registerSend } from './commands/send.js';
import { registerSenders } from './commands/senders.js';
import { registerQueue, registerTail } from './commands/watch.js';
import { registerWebhooks } from './commands/webhooks.js';
import { registerSuppressions } from './commands/suppressions.js';
import { EXIT_CODES_HELP } from './errors.js';
import { OUTPUT_FORMATS } from './output.js';
import type { Runtime } from './runtime.js';

type Env = Record<string, string | undefined>;

const HELP_AFTER = `
Which relay: --address, else --context NAME, else RELAY_ADDRESS, else the current context of
$XDG_CONFIG_HOME/campus-relay/config.yaml (relay context --help), else a local npm run stack, else 127.0.0.1:50051.
API key: --api-key, else the context's api_key / api_key_env, else RELAY_API_KEY. Admin commands need
a key of a client with admin: true.

Examples:
  relay context set prod --address relay.campus.example:443 --tls --api-key-env RELAY_PROD_KEY --use
  relay senders list
  relay senders apply -f sender.yaml
  relay messages list --state failed --since 24h
  relay messages retry --state failed --sender no-reply --yes
  relay tail --sender no-reply

${EXIT_CODES_HELP}`;

/** The command tree; `rt(cmd)` builds a command's runtime from its options when it runs. */
export function createProgram(rt: (cmd: Command) => Runtime, env: Env, version: string): Command {
  const program = new Command('relay');
  program
    .description('Campus Relay from the command line: senders, clients, API keys, messages, queues')
    .version(version, '-V, --version')
    .option('--address <host:port>', 'the relay (ingest gRPC); default RELAY_ADDRESS or the current context')
    .option('--api-key <key>', 'API key (prefer RELAY_API_KEY or a context: argv is visible to other users)')
    .option('--context <name>', 'a context from the contexts file')
    .option('--tls', 'use TLS with the system CAs')
    .option('--ca-file <path>', 'use TLS and trust this PEM CA')
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .option('--timeout <duration>', 'how long one call may take', '30s')
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError('(relay --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str.startsWith('error:') ? `relay: ${str}` : str) })
    .addHelpText('after', HELP_AFTER);
  registerSenders(program, rt);
  registerClients(program, rt);
  registerKeys(program, rt);
  registerMessages(program, rt);
  registerQueue(program, rt);
  registerTail(program, rt);
  registerWebhooks(program, rt);
  registerSuppressions(program, rt);
  registerSend(program, rt);
  registerContext(program, env);
  return program;
}
