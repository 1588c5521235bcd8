import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './ports.ts';
import { abandonWait, waitFor } from './wait.ts';

/**
 * A real S3-compatible server (MinIO, built by e2e/tools/ensure-tools.ts) on 127.0.0.1 with
 * a random port, throwaway credentials and a temp data dir. Tests call `stop()` from an
 * `after` hook; a process exit handler kills it too, so a crashed test run leaves no server.
 */

export interface S3Server {
  /** `http://HOST:PORT` */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** A client for test setup and inspection (path style, like the store under test). */
  client: S3Client;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const running = new Map<ChildProcess, string>();
process.once('exit', () => {
  // Also on an interrupted run (the cluster tests exit from their SIGINT handler): no server
  // and no data dir may outlive the test process.
  for (const [child, dataDir] of running) {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
});

async function waitUntilLive(endpoint: string, child: ChildProcess, output: () => string): Promise<void> {
  try {
    await waitFor(
      'the S3 server to come up',
      async () => {
        if (child.exitCode !== null) abandonWait('the S3 server exited during startup');
        return (await fetch(`${endpoint}/minio/health/live`, { signal: AbortSignal.timeout(2000) })).ok;
      },
      { timeoutMs: STARTUP_TIMEOUT_MS, intervalMs: 100 },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${output()}`);
  }
}

function stopper(child: ChildProcess, dataDir: string): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      running.delete(child);
      await rm(dataDir, { recursive: true, force: true });
    })();
    return stopping;
  };
}

/**
 * `host` is the one address it listens on: 127.0.0.1 by default; the cluster tests pass the
 * host side of their pod network so that pods reach it (never a wildcard address).
 */
export async function startS3Server(options: { host?: string } = {}): Promise<S3Server> {
  const binary = process.env.GITMIRROR_E2E_MINIO;
  if (!binary) throw new Error('GITMIRROR_E2E_MINIO is not set: run the suite with `npm run e2e`');
  const host = options.host ?? '127.0.0.1';
  const [port, consolePort] = [await freePort(host), await freePort(host)];
  const dataDir = await mkdtemp(join(tmpdir(), 'gitmirror-e2e-s3-'));
  const accessKeyId = `e2e${randomBytes(6).toString('hex')}`;
  const secretAccessKey = randomBytes(18).toString('base64url');
  const child = spawn(
    binary,
    [
      'server',
      '--quiet',
      '--address',
      `${host}:${port}`,
      '--console-address',
      `${host}:${consolePort}`,
      dataDir,
    ],
    {
      env: {
        PATH: process.env.PATH,
        HOME: dataDir,
        MINIO_ROOT_USER: accessKeyId,
        MINIO_ROOT_PASSWORD: secretAccessKey,
        MINIO_BROWSER: 'off',
        MINIO_UPDATE: 'off',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  running.set(child, dataDir);
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const stop = stopper(child, dataDir);
  const endpoint = `http://${host}:${port}`;
  try {
    await waitUntilLive(endpoint, child, () => tail);
  } catch (err) {
    await stop();
    throw err;
  }
  const region = 'us-east-1';
  const client = new S3Client({
    endpoint,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
  });
  const createBucket = async (name: string) => {
    await client.send(new CreateBucketCommand({ Bucket: name }));
  };
  return { endpoint, accessKeyId, secretAccessKey, region, client, createBucket, stop };
}
