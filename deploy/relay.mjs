// The image's entry point: `docker run IMAGE <service>` runs services/<service>/dist/main.js.
const SERVICES = ['ingest', 'scheduler', 'smtp-sender', 'graph-sender', 'credentials'];

const [name] = process.argv.splice(2, 1);
if (!name || !SERVICES.includes(name)) {
  console.error(`usage: <image> ${SERVICES.join(' | ')}${name ? `\nunknown service: ${name}` : ''}`);
  process.exitCode = 2;
} else {
  await import(new URL(`./services/${name}/dist/main.js`, import.meta.url).href);
}
