import { isServiceName } from '@relay/core';

/**
 * The `service.name` of the process about to run, from how it was started:
 * `node … services/<name>/dist/main.js` or the image's `node … relay.mjs <name>`. The contract
 * fixes these names (`relay-<name>`), so they win over OTEL_SERVICE_NAME; anything else (a tool,
 * a test) keeps OTEL_SERVICE_NAME or the SDK's default.
 */
export function serviceNameFromArgv(argv: readonly string[]): string | undefined {
  const script = (argv[1] ?? '').replace(/\\/g, '/');
  const main = /(?:^|\/)services\/([a-z-]+)\/(?:dist|src)\/main\.[cm]?[jt]s$/.exec(script);
  const name = main?.[1] ?? (/(?:^|\/)relay\.mjs$/.test(script) ? argv[2] : undefined);
  return isServiceName(name) ? `relay-${name}` : undefined;
}
