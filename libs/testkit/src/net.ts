import { createServer } from 'node:net';

/**
 * A TCP port that was free a moment ago. Prefer port 0 where the code under test accepts it:
 * another process can take this port before the caller binds it.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not read the listening port'))));
    });
  });
}
