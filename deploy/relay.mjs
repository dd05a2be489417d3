// The image's entry point: `docker run IMAGE <service>` runs services/<service>/dist/main.js.
// The image starts it as `node --import /app/libs/telemetry/dist/register.js relay.mjs <service>`:
// the telemetry module reads the service's name (service.name relay-<service>) from that argument.
// The list of services is @relay/core's SERVICE_NAMES (libs/core/src/services.ts), linked into
// the image's node_modules like every library the services use.
import { isServiceName, SERVICE_NAMES } from '@relay/core';

const [name] = process.argv.splice(2, 1);
if (!isServiceName(name)) {
  console.error(`usage: <image> ${SERVICE_NAMES.join(' | ')}${name ? `\nunknown service: ${name}` : ''}`);
  process.exitCode = 2;
} else {
  await import(new URL(`./services/${name}/dist/main.js`, import.meta.url).href);
}
