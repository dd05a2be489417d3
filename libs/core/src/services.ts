/**
 * The relay's services: `services/<name>`, the image's argument (`docker run IMAGE <name>`) and
 * `service.name` `relay-<name>`. In start order: credentials first, since the others reach it.
 * The one list; deploy/relay.mjs, the stack, telemetry and the tests read it from here.
 */
export const SERVICE_NAMES = ['credentials', 'ingest', 'scheduler', 'smtp-sender', 'graph-sender'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export function isServiceName(name: string | undefined): name is ServiceName {
  return (SERVICE_NAMES as readonly string[]).includes(name ?? '');
}
