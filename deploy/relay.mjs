// The image's entry point: `docker run IMAGE <service>` runs services/<service>/dist/main.js.
// The image starts it as `node --import /app/libs/telemetry/dist/register.js relay.mjs <service>`:
// the telemetry module reads the service's name (service.name relay-<service>) from that argument.
const SERVICES = ['ingest', 'scheduler', 'smtp-sender', 'graph-sender', 'credentials'];

const [name] = process.argv.splice(2, 1);
if (!name || !SERVICES.includes(name)) {
  console.error(`usage: <image> ${SERVICES.join(' | ')}${name ? `\nunknown service: ${name}` : ''}`);
  process.exitCode = 2;
} else {
  await import(new URL(`./services/${name}/dist/main.js`, import.meta.url).href);
}
