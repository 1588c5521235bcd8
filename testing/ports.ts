import { createServer } from 'node:net';

/**
 * A port that was free on `host` a moment ago. Another process may take it before it is
 * bound, so use it only where a child process must be told its port up front (a sidecar's
 * `GITMIRROR_LISTEN`, etcd, MinIO); a server in this process listens on port 0 instead.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error(`could not pick a port on ${host}`);
  return address.port;
}
